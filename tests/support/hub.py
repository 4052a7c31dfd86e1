"""A real JupyterHub (and its real configurable-http-proxy) in a subprocess, for tests.

The hub loads a deployment config (``deployments/<name>/jupyterhub_config.py``)
and then the test's extra lines, so tests exercise what users deploy. Its
stdout/stderr go to a log file the tests can search (e.g. for leaked tokens).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import requests

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition, timeout: float = 30.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``condition()`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"Timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


class HubProcess:
    """``jupyterhub -f <generated config>`` with a service token the test can use."""

    def __init__(
        self,
        workdir: Path,
        endpoints_file: Path,
        deployment: str = "local_emulator",
        extra_config: str = "",
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_token = secrets.token_hex(16)
        self.log_path = workdir / "hub.log"
        self.config_path = workdir / "jupyterhub_config.py"
        self.config_path.write_text(self._config(deployment, extra_config))
        inherited = {k: v for k, v in os.environ.items() if k != "AZUREML_CURRENT_CLOUD"}  # set by MLClients in tests
        self.env = {
            **inherited,
            "PATH": os.pathsep.join([str(REPO / "node_modules" / ".bin"), str(Path(sys.executable).parent), os.environ["PATH"]]),
            "AML_EMULATOR_ENDPOINTS": str(endpoints_file),
            "AML_DEMO_HOME": str(workdir / "homes"),
            "AML_DEMO_HUB_PORT": str(self.port),
            "AML_CLIENT_ID": DEMO_CLIENT_ID,
            "AML_CLIENT_SECRET": DEMO_CLIENT_SECRET,
            "JUPYTERHUB_CRYPT_KEY": secrets.token_hex(32),
            "AML_DEMO_SPAWNER": "simple",  # tests about sign-in need no compute instances
            **(env or {}),
        }
        self.proc: subprocess.Popen | None = None

    def _config(self, deployment: str, extra: str) -> str:
        base = DEPLOYMENTS / deployment / "jupyterhub_config.py"
        return textwrap.dedent(
            f"""
            load_subconfig({str(base)!r})
            c.JupyterHub.hub_port = {free_port()}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
            c.JupyterHub.db_url = "sqlite:///{self.workdir / 'jupyterhub.sqlite'}"
            c.JupyterHub.cookie_secret_file = {str(self.workdir / 'cookie_secret')!r}
            c.JupyterHub.pid_file = {str(self.workdir / 'hub.pid')!r}
            c.ConfigurableHTTPProxy.pid_file = {str(self.workdir / 'proxy.pid')!r}
            c.JupyterHub.log_level = "DEBUG"
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.api_token!r}}}]
            c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), {{
                "name": "test-admin",
                "services": ["test-admin"],
                "scopes": ["admin:users", "admin:auth_state", "admin:servers", "read:users", "tokens"],
            }}]
            """
        ) + textwrap.dedent(extra)

    def start(self, timeout: float = 60.0) -> HubProcess:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(self._healthy, timeout, message=f"JupyterHub at {self.url} (log: {self.log_path})")
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"JupyterHub exited with {self.proc.returncode}:\n{self.logs()[-3000:]}")
        try:
            return requests.get(f"{self.url}/hub/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout)

    def restart(self) -> HubProcess:
        self.stop()
        return self.start()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the hub's REST API, as the test's admin service -------------------
    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"token {token or self.api_token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.url}/hub/api{path}", headers=headers, timeout=30, **kwargs)

    def auth_state(self, username: str) -> dict[str, Any] | None:
        r = self.api("GET", f"/users/{username}")
        r.raise_for_status()
        return r.json().get("auth_state")

    def user_token(self, username: str, scopes: list[str] | None = None) -> str:
        """A hub API token owned by ``username`` (as a server or script of theirs would hold)."""
        body = {"note": "test", **({"scopes": scopes} if scopes is not None else {})}
        r = self.api("POST", f"/users/{username}/tokens", json=body)
        r.raise_for_status()
        return r.json()["token"]
