"""`make demo` works: the launcher starts the emulator and a hub a person can sign in to."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import requests

from support.hub import free_port, wait_for
from support.signin import hub_sign_in


def _ready(hub: str, session: requests.Session) -> bool:
    progress = session.get(f"{hub}/hub/api/users/alice@contoso.example/server/progress", stream=True, timeout=120)
    events = [line for line in progress.iter_lines(decode_unicode=True) if line.startswith("data:")]
    assert not any('"failed": true' in e for e in events), events
    return any('"ready": true' in e for e in events)


def test_demo_launcher_serves_a_hub_you_can_sign_in_to(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aml_jupyterhub.emulator.demo", "--workdir", str(tmp_path), "--hub-port", str(port), "--any-ports"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        endpoints = json.loads(proc.stdout.readline())["emulator"]
        hub = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read()
            try:
                return requests.get(f"{hub}/hub/health", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 60, message="the demo hub")
        session, callback = hub_sign_in(hub, "alice@contoso.example", endpoints["ca_bundle"])
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
        page = session.get(lab.headers["Location"], verify=endpoints["ca_bundle"], timeout=30)
        assert page.status_code == 200 and "JupyterLab" in page.text, page.text[:300]
        contents = session.get(lab.headers["Location"].replace("/lab", "/api/contents"), verify=endpoints["ca_bundle"], timeout=30)
        assert "userfiles" in {item["name"] for item in contents.json()["content"]}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
