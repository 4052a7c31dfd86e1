"""A real hub running AMLSpawner against the session emulator, and the steps tests take with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aml_jupyterhub.emulator.core.config import default_config
from aml_jupyterhub.emulator.core.server import endpoints_line
from support.arm_fixtures import FAST
from support.hub import HubProcess, wait_for
from support.signin import hub_sign_in

DIRECTORY = default_config()
ALICE, BOB, CAROL = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol"))


def aml_hub(emulator, workdir: Path, hub_id: str, extra: str = "", env: dict[str, str] | None = None) -> Iterator[HubProcess]:
    """A started hub (deployments/local_emulator, AML spawner) whose instances are tagged ``hub_id``."""
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    config = f"\nc.AMLSpawner.hub_id = {hub_id!r}  # this module's instances, told apart from other modules' hubs\n" + extra
    hub = HubProcess(
        workdir, endpoints_file, extra_config=config, env={"AML_DEMO_SPAWNER": "aml", "AML_POLL_INTERVAL": "0.5", **(env or {})}
    )
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture(scope="module")
def instances(emulator):
    """The session emulator, running compute instances for real (startup script, Jupyter) while the module runs."""
    emulator.call(emulator.emulator.set_instance_runtime, True)
    yield emulator.state.instances
    emulator.call(emulator.emulator.set_instance_runtime, False)


@pytest.fixture
def fast(control):
    """Compute transitions in tenths of a second."""
    control.update_settings(timings=FAST)
    return control


def signed_in(hub: HubProcess, user, ca_bundle: str) -> requests.Session:
    session, callback = hub_sign_in(hub.url, user.username, ca_bundle)
    assert callback.status_code == 302
    return session


def progress_events(hub: HubProcess, username: str, server: str = "") -> list[str]:
    """The data lines of a spawn's progress stream, to its end."""
    progress = hub.api("GET", f"/users/{username}/servers/{server}/progress", stream=True)
    return [line for line in progress.iter_lines(decode_unicode=True) if line.startswith("data:")]


def spawn(hub: HubProcess, username: str, options: dict | None = None, server: str = "") -> dict:
    """Start a server through the REST API and wait until it is ready (fails fast if it failed)."""
    r = hub.api("POST", f"/users/{username}/servers/{server}", json={"user_options": options or {}})
    assert r.status_code in (201, 202), r.text

    def ready() -> dict | None:
        s = hub.api("GET", f"/users/{username}").json()["servers"].get(server)
        if s is None:
            raise AssertionError(f"{username}'s server {server!r} failed to start:\n{hub.logs()[-3000:]}")
        return s if s["ready"] else None

    return wait_for(ready, 120, 0.2, f"{username}'s server {server!r}")


def stop(hub: HubProcess, username: str, server: str = "") -> None:
    r = hub.api("DELETE", f"/users/{username}/servers/{server}")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server not in hub.api("GET", f"/users/{username}").json()["servers"], 60, 0.2, "stop")


def instances_of(control, hub_id: str, username: str, server: str = "") -> list[dict]:
    """The compute instances ``hub_id``'s hub made for ``username``'s server ``server``."""
    return [
        c for c in control.arm_computes()
        if c["tags"].get("aml-jupyterhub-hub") == hub_id and c["tags"].get("aml-jupyterhub-user") == username
        and c["tags"].get("aml-jupyterhub-server") == server
    ]  # fmt: skip
