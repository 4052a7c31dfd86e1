"""The instance's Jupyter and the hub: activity reports, and JupyterLab's way back to the hub.

The agent merges its settings into the notebook user's Jupyter server config
(``~/.jupyter/jupyter_server_config.json``, :func:`configure_jupyter`; Jupyter reads only
extension switches from ``jupyter_server_config.d``), which

- loads this module as a Jupyter server extension, which every ``interval``
  seconds posts the server's last activity (API requests, kernels, terminals:
  ``web_app.last_activity()``, what JupyterHub's own single-user servers
  report) to ``POST <hub api>/users/<user>/activity`` with the instance's hub
  token (scope ``users:activity!user=<user>``). The hub's idle culler and the
  admin panel's Last Activity use it (docs/token-broker.md, "Idle shutdown");
- sets what JupyterLab reads to show its Hub menu (File > Hub Control Panel,
  Log Out), as under JupyterHub: ``hub_prefix``, ``hub_host``, ``user``;
- hides JupyterLab's File > Shut Down (``quit_button``): stopping Jupyter
  alone would leave the instance billing; the hub's control panel stops it.

Reports never carry or log a token; a failed report is retried at the next interval.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from traitlets import Float, Unicode
from traitlets.config import LoggingConfigurable

log = logging.getLogger("aml_jupyterhub.instance")
CONFIG_FILE = Path(".jupyter") / "jupyter_server_config.json"


def hub_location(hub_url: str) -> tuple[str, str]:
    """``(hub_host, hub_prefix)`` from the hub's public URL or its API URL (``https://hub.example.org/hub/api`` or
    ``.../hub/`` -> ``https://hub.example.org``, ``/hub/``)."""
    parts = urlsplit(hub_url.rstrip("/"))
    path = parts.path[: -len("/api")] if parts.path.endswith("/api") else parts.path
    return f"{parts.scheme}://{parts.netloc}", path.rstrip("/") + "/"


def jupyter_config(hub_api_url: str, user: str, server: str, interval: float = 60.0, public_hub_url: str = "") -> dict[str, Any]:
    """The browser goes to ``public_hub_url`` (JupyterHub's ``public_url`` + ``/hub/``) if the hub has one,
    else where the instance reaches the hub's API."""
    host, prefix = hub_location(public_hub_url or hub_api_url)
    return {
        "ServerApp": {
            "jpserver_extensions": {__name__: True},
            "tornado_settings": {"hub_prefix": prefix, "hub_host": host, "user": user},
            "quit_button": False,
        },
        "HubActivity": {"hub_api_url": hub_api_url.rstrip("/"), "user": user, "server": server, "interval": interval},
    }


def configure_jupyter(
    home: Path, hub_api_url: str, user: str, server: str, interval: float = 60.0, public_hub_url: str = ""
) -> Path:
    """Merge the Jupyter config above into ``home``'s (the notebook user's), keeping the user's other settings."""
    path = home / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    for section, values in jupyter_config(hub_api_url, user, server, interval, public_hub_url).items():
        if not isinstance(config.get(section), dict):
            config[section] = {}
        merged = config[section]
        for key, value in values.items():
            merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))
    return path


class HubActivity(LoggingConfigurable):
    """Posts the Jupyter server's last activity to the hub, from a worker thread (never blocks Jupyter)."""

    hub_api_url = Unicode("", config=True, help="The hub's API URL, e.g. https://hub.example.org/hub/api.")
    user = Unicode("", config=True, help="The hub user this instance belongs to.")
    server = Unicode("", config=True, help="The hub server (\"\" for the default one) this instance is.")
    interval = Float(60.0, config=True, help="Seconds between activity reports.")
    timeout = Float(20.0, config=True, help="Timeout of one report.")

    def body(self, last_activity: Any) -> dict[str, Any]:
        stamp = last_activity.isoformat() if last_activity.tzinfo else last_activity.isoformat() + "Z"
        return {"last_activity": stamp, "servers": {self.server: {"last_activity": stamp}}}

    def post(self, last_activity: Any) -> int:
        """One report (blocking: run it in a thread); returns the hub's status code."""
        from .hub_token import InstanceHubToken

        token = InstanceHubToken(self.hub_api_url).get()
        response = requests.post(
            f"{self.hub_api_url}/users/{self.user}/activity",
            json=self.body(last_activity),
            headers={"Authorization": f"token {token}"},
            timeout=self.timeout,
        )
        return response.status_code

    async def run(self, web_app: Any) -> None:
        reported = None
        while True:
            last = web_app.last_activity()
            if last is not None and last != reported:
                try:
                    status = await asyncio.get_running_loop().run_in_executor(None, self.post, last)
                except Exception as e:  # noqa: BLE001 - a report that fails is retried next time
                    self.log.warning("aml-jupyterhub: activity report failed (%s)", type(e).__name__)
                else:
                    if status < 300:
                        reported = last
                    else:
                        self.log.warning("aml-jupyterhub: the hub refused the activity report (%s)", status)
            await asyncio.sleep(self.interval)


_TASKS: set[asyncio.Task] = set()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    reporter = HubActivity(parent=serverapp)
    if not (reporter.hub_api_url and reporter.user):
        serverapp.log.info("aml-jupyterhub: no hub configured; activity is not reported")
        return
    task = asyncio.get_event_loop().create_task(reporter.run(serverapp.web_app))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)
    serverapp.log.info("aml-jupyterhub: reporting activity to the hub every %.0f s", reporter.interval)

