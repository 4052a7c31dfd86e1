"""AMLSpawner in a real JupyterHub (and proxy) against the emulated ARM, acting as each user."""

from __future__ import annotations

import pytest
import requests

from aml_jupyterhub.emulator.config import default_config
from aml_jupyterhub.emulator.server import endpoints_line
from support.arm_fixtures import FAST
from support.hub import HubProcess, wait_for
from support.signin import hub_sign_in

DIRECTORY = default_config()
ALICE, BOB, CAROL = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol"))


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("aml-hub")
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    extra = """
    c.AMLSpawner.patience_seconds = 5
    c.AMLSpawner.stop_wait_seconds = 30
    """
    hub = HubProcess(workdir, endpoints_file, extra_config=extra, env={"AML_DEMO_SPAWNER": "aml", "AML_POLL_INTERVAL": "0.5"})
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def fast(control):
    control.update_settings(timings=FAST)
    return control


def signed_in(hub, user, ca_bundle) -> requests.Session:
    session, callback = hub_sign_in(hub.url, user.username, ca_bundle)
    assert callback.status_code == 302
    return session


def server_ready(hub, username: str, server: str = "") -> dict | None:
    model = hub.api("GET", f"/users/{username}").json()
    s = model["servers"].get(server)
    return s if s and s["ready"] else None


def spawn(hub, username: str, options: dict | None = None, server: str = "") -> dict:
    r = hub.api("POST", f"/users/{username}/servers/{server}", json={"user_options": options or {}})
    assert r.status_code in (201, 202), r.text
    return wait_for(lambda: server_ready(hub, username, server), 60, 0.2, f"{username}'s server")


def stop(hub, username: str, server: str = "") -> None:
    r = hub.api("DELETE", f"/users/{username}/servers/{server}")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: server not in hub.api("GET", f"/users/{username}").json()["servers"], 60, 0.2, "stop")


def my_compute(control, username: str) -> dict:
    computes = [c for c in control.arm_computes() if c["tags"].get("aml-jupyterhub-user") == username]
    assert len(computes) == 1, computes
    return computes[0]


def test_spawn_creates_the_users_own_instance_and_redirects_to_it(hub, fast, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    since = fast.now()
    spawn(hub, ALICE.username)
    compute = my_compute(fast, ALICE.username)
    inner = compute["properties"]["properties"]
    assert inner["state"] == "Running"
    assert inner["createdBy"]["userId"] == ALICE.oid  # created with alice's own token
    assert inner["personalComputeInstanceSettings"]["assignedUser"]["objectId"] == ALICE.oid
    assert inner["idleTimeBeforeShutdown"] == "PT60M"
    principals = fast.request_counts(since=since, service="arm")["by_principal"]
    assert set(principals) == {ALICE.username}
    r = session.get(f"{hub.url}/user/{ALICE.username}/lab/tree/x.ipynb", allow_redirects=False, timeout=30)
    assert r.status_code == 302
    assert r.headers["Location"] == f"https://{compute['name']}.eastus.instances.azureml.ms/lab/tree/x.ipynb"
    stop(hub, ALICE.username)
    assert my_compute(fast, ALICE.username)["properties"]["properties"]["state"] == "Stopped"


def test_second_spawn_reuses_the_stopped_instance(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username)
    first = my_compute(fast, BOB.username)["name"]
    stop(hub, BOB.username)
    since = fast.now()
    spawn(hub, BOB.username)
    assert my_compute(fast, BOB.username)["name"] == first
    routes = fast.request_counts(since=since, service="arm")["by_route"]
    assert routes.get("arm PUT ComputeItem", 0) == 0 and routes["arm POST ComputeAction"] == 1  # start, not create
    stop(hub, BOB.username)


def test_tampered_options_are_refused(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    for options in ({"profile": "no-such-profile"}, {"profile": "gpu"}, {"vm_size": "Standard_M416ms_v2"}):
        r = hub.api("POST", f"/users/{BOB.username}/server", json={"user_options": options})
        assert r.status_code == 400, (options, r.text)
        assert "profile" in r.json()["message"] or "options" in r.json()["message"]
    assert hub.api("GET", f"/users/{BOB.username}").json()["servers"] == {}


def test_options_form_is_escaped(hub, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    page = session.get(f"{hub.url}/hub/spawn/{ALICE.username}", timeout=30)
    assert page.status_code == 200
    assert 'value="small"' in page.text and "Small CPU (4 cores, 14 GB)" in page.text
    assert "GPU (NC6s v3)" in page.text  # alice is in spark-users
    bob_page = signed_in(hub, BOB, ca_bundle).get(f"{hub.url}/hub/spawn/{BOB.username}", timeout=30)
    assert "GPU (NC6s v3)" not in bob_page.text


def test_quota_error_reaches_the_user_clearly(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    r = hub.api("POST", f"/users/{ALICE.username}/servers/gpu", json={"user_options": {"profile": "gpu"}})
    assert r.status_code == 500  # a failure within the first seconds is the API's answer
    message = r.json()["message"]
    assert "no quota left for this machine size" in message
    assert "standardNCSv3Family" in message and "Traceback" not in message
    assert hub.api("GET", f"/users/{ALICE.username}").json()["servers"].get("gpu") is None


def test_named_servers_get_distinct_instances(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username)
    spawn(hub, CAROL.username, {"profile": "memory"}, server="big")
    computes = [c for c in fast.arm_computes() if c["tags"].get("aml-jupyterhub-user") == CAROL.username]
    assert len(computes) == 2
    assert {c["tags"]["aml-jupyterhub-server"] for c in computes} == {"", "big"}
    assert {c["id"].split("/workspaces/")[1].split("/")[0] for c in computes} == {"ws-research", "ws-analytics"}
    stop(hub, CAROL.username, "big")
    stop(hub, CAROL.username)
