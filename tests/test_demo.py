"""`make demo` works: the launcher starts the emulator and a hub a person can sign in to.

It runs beside anything holding JupyterHub's default internal ports (another hub, or a
`make demo` while `make test` runs), keeps the terminal short, and leaves no process
behind when its hub dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from support.hub import free_port, wait_for
from support.signin import hub_sign_in

JUPYTERHUB_DEFAULT_PORTS = (8081, 8001)  # the hub's API and the proxy's API, unless configured


def _ready(hub: str, session: requests.Session) -> bool:
    progress = session.get(f"{hub}/hub/api/users/alice@contoso.example/server/progress", stream=True, timeout=120)
    events = [line for line in progress.iter_lines(decode_unicode=True) if line.startswith("data:")]
    assert not any('"failed": true' in e for e in events), events
    return any('"ready": true' in e for e in events)


@contextlib.contextmanager
def held_ports(ports):
    """Listen on ``ports`` where they are free (where they are not, someone else holds them: same test)."""
    held = []
    for port in ports:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        except OSError:
            s.close()
    try:
        yield
    finally:
        for s in held:
            s.close()


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.timeout(600)
def test_demo_launcher_serves_a_hub_you_can_sign_in_to(tmp_path):
    port = free_port()
    terminal = tmp_path / "terminal.txt"
    env = {k: v for k, v in os.environ.items() if k != "AZUREML_CURRENT_CLOUD"}
    with held_ports(JUPYTERHUB_DEFAULT_PORTS), open(terminal, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aml_jupyterhub.emulator.demo", "--workdir", str(tmp_path), "--hub-port", str(port), "--any-ports"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            hub = f"http://127.0.0.1:{port}"

            def launcher_alive() -> None:
                assert proc.poll() is None, terminal.read_text() + (tmp_path / "logs" / "hub.log").read_text()[-3000:]

            def endpoints() -> dict | None:
                launcher_alive()
                path = tmp_path / "endpoints.json"
                return json.loads(path.read_text())["emulator"] if path.exists() else None

            def up() -> bool:
                launcher_alive()
                try:
                    return requests.get(f"{hub}/hub/health", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            emulator = wait_for(endpoints, 60, message="the emulator's endpoints")
            wait_for(up, 60, message="the demo hub")
            session, callback = hub_sign_in(hub, "alice@contoso.example", emulator["ca_bundle"])
            assert callback.status_code == 302
            home = session.get(f"{hub}/hub/home", timeout=30)
            assert home.status_code == 200 and "alice@contoso.example" in home.text
            assert (tmp_path / "emulator" / "tls" / "ca.pem").exists()  # state kept for the next run

            # Spawn from the options form and land in JupyterLab on alice's own emulated instance.
            form = session.get(f"{hub}/hub/spawn", timeout=30)
            assert 'value="small"' in form.text
            spawned = session.post(f"{hub}/hub/spawn", data={"profile": "small", "_xsrf": session.cookies["_xsrf"]}, timeout=30)
            assert spawned.status_code == 200  # the progress page (or the server, if already up)
            wait_for(lambda: _ready(hub, session), 120, 0.5, "alice's instance")
            lab = session.get(f"{hub}/user/alice@contoso.example/lab", allow_redirects=False, timeout=30)
            assert lab.status_code == 302 and lab.headers["Location"].startswith("https://127.0.0.1:")
            # Through the instance's gateway: alice signed in at Entra ID already, so no second sign-in form.
            page = session.get(lab.headers["Location"], verify=emulator["ca_bundle"], timeout=30)
            assert page.status_code == 200 and "JupyterLab" in page.text, page.text[:300]
            contents = session.get(lab.headers["Location"].replace("/lab", "/api/contents"), verify=emulator["ca_bundle"], timeout=30)
            assert "userfiles" in {item["name"] for item in contents.json()["content"]}

            # A calm terminal: the address, the users, where the logs are; the services' output is in those logs.
            shown = terminal.read_text()
            assert hub in shown and str(tmp_path / "logs") in shown
            assert len(shown.strip().splitlines()) <= 15, shown
            for noise in ("INFO", "WARN", "200 GET", "log4j", "[I ", "[W "):
                assert noise not in shown, shown
            assert "JupyterHub is now running" in (tmp_path / "logs" / "hub.log").read_text()
            assert (tmp_path / "logs" / "emulator.log").stat().st_size > 0

            # The hub dies: the launcher stops too, and leaves neither the hub's proxy nor anything else running.
            [hub_pid] = [p for p in children(proc.pid) if "jupyterhub" in cmdline(p)]
            proxy_pid = int((tmp_path / "hub" / "jupyterhub-proxy.pid").read_text())
            assert "configurable-http-proxy" in cmdline(proxy_pid)
            os.kill(hub_pid, signal.SIGKILL)
            assert proc.wait(90) != 0
            wait_for(lambda: not alive(proxy_pid), 10, 0.1, "the orphaned proxy to be gone")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
