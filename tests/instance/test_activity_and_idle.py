"""Issue 13 item 4 and issue 17 items 2-3: the hub knows what runs on the instances.

A real hub and proxy, the emulated Azure and emulated instances running their startup script and a
real JupyterLab: activity on the instance reaches the hub, the hub's idle culler (on by default)
stops an idle server and its instance, a server whose instance stopped in Azure is shown stopped and
its link leads back to the hub, the admin sees each instance's state and size, and JupyterLab on the
instance offers the hub's menu.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest
import requests

from aml_jupyterhub.instance.activity import CONFIG_FILE
from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, signed_in, spawn, stop
from support.hub import wait_for
from support.signin import instance_session

HUB_ID = "activity"
IDLE_SECONDS = 8


@pytest.fixture(scope="module")
def hub(emulator, instances, tmp_path_factory):
    extra = f"""
c.AMLSpawner.stop_wait_seconds = 30
c.AMLSpawner.reconcile_interval_seconds = 0
c.AMLSpawner.activity_interval_seconds = 1
c.AMLSpawner.idle_cull_interval_seconds = 1
c.AMLSpawner.idle_cull_after_seconds = {IDLE_SECONDS}
c.JupyterHub.named_server_limit_per_user = 0
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("activity-hub"), HUB_ID, extra)


def compute_of(control, username: str, server: str = "") -> dict:
    [compute] = instances_of(control, HUB_ID, username, server)
    return compute


def jupyter(instances, compute: dict) -> str:
    return f"https://127.0.0.1:{instances.instances[compute['id'].lower()].port}"


def server_model(hub, username: str, server: str = "") -> dict | None:
    return hub.api("GET", f"/users/{username}").json()["servers"].get(server)


def parse(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_activity_on_the_instance_reaches_the_hub_and_keeps_the_server(hub, fast, instances, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username, server="busy")
    compute = compute_of(fast, ALICE.username, "busy")
    started = parse(server_model(hub, ALICE.username, "busy")["started"])
    session, lab = instance_session(f"{jupyter(instances, compute)}/lab", ALICE.username, ca_bundle)
    assert lab.status_code == 200
    # JupyterLab's Hub menu (File > Hub Control Panel, Log Out) and no Shut Down that would leave the instance billing.
    found = re.search(r'id="jupyter-config-data"[^>]*>\s*(\{.*?\})\s*</script>', lab.text, re.S)
    home = instances.instances[compute["id"].lower()].home
    assert found and (home / CONFIG_FILE).exists()
    page_config = json.loads(found.group(1))
    assert page_config["hubPrefix"] == "/hub/" and page_config["hubHost"] == hub.url and page_config["hubUser"] == ALICE.username
    assert page_config["quitButton"] is False

    # Work on the instance for longer than the idle limit: the hub sees it and keeps the server.
    deadline = time.monotonic() + IDLE_SECONDS + 4
    while time.monotonic() < deadline:
        assert session.get(f"{jupyter(instances, compute)}/api/contents", verify=ca_bundle, timeout=30).status_code == 200
        time.sleep(0.5)  # a user's pace, not a wait for a condition
    model = server_model(hub, ALICE.username, "busy")
    assert model is not None and model["ready"], "a busy server was culled"
    assert parse(model["last_activity"]) > started + dt.timedelta(seconds=IDLE_SECONDS)
    users = {u["name"]: u for u in hub.api("GET", "/users").json()}
    assert parse(users[ALICE.username]["last_activity"]) >= parse(model["last_activity"])
    stop(hub, ALICE.username, "busy")


def test_an_idle_server_is_stopped_by_the_hub(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username, server="idle")
    name = compute_of(fast, BOB.username, "idle")["name"]
    wait_for(lambda: server_model(hub, BOB.username, "idle") is None, IDLE_SECONDS + 30, 0.5, "the idle culler")
    assert f"Idle culler: stopping {BOB.username}:idle" in hub.logs()
    fast.arm_settle(name)
    assert fast.arm_compute(name)["properties"]["properties"]["state"] == "Stopped"  # the instance, not just the server


def test_a_server_whose_instance_stopped_in_azure_is_shown_stopped_and_never_dead_ends(hub, fast, instances, ca_bundle):
    session = signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username, server="portal")
    compute = compute_of(fast, CAROL.username, "portal")
    state = server_model(hub, CAROL.username, "portal")["state"]
    assert (state["instance_state"], state["vm_size"]) == ("Running", "Standard_DS3_v2")  # the admin panel's server card
    fast.arm_scheduled_stop(compute["name"])  # Azure stops it (a schedule, the portal...)
    fast.arm_settle(compute["name"])
    seen = time.monotonic()
    hop = session.get(f"{hub.url}/user/{CAROL.username}/portal/lab", allow_redirects=False, timeout=30)
    assert not (hop.status_code == 302 and hop.headers["Location"].startswith(jupyter(instances, compute)))
    assert 'href="/hub/home"' in hop.text or hop.status_code in (302, 424, 503)  # back to the hub, never the dead instance
    wait_for(lambda: server_model(hub, CAROL.username, "portal") is None, 10, 0.2, "the hub to show it stopped")
    assert time.monotonic() - seen < 5  # one poll interval (1 s here) plus a compute list, with margin
    after = session.get(f"{hub.url}/user/{CAROL.username}/portal/lab", timeout=30)
    assert after.url.startswith(hub.url) and CAROL.username.split("@")[0] in after.text or after.status_code in (424, 503)
