"""AMLSpawner in a real JupyterHub (and proxy) against the emulated ARM, acting as each user."""

from __future__ import annotations

import pytest

from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, progress_events, signed_in, spawn, stop
from support.arm_fixtures import FAST
from support.hub import wait_for


HUB_ID = "demo"


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = """
c.AMLSpawner.patience_seconds = 5
c.AMLSpawner.stop_wait_seconds = 30
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}  # the API answers 202 after 1 s
c.AMLSpawner.reconcile_interval_seconds = 1
c.JupyterHub.named_server_limit_per_user = 0  # these tests give one user many named servers
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("aml-hub"), HUB_ID, extra)


def server_ready(hub, username: str, server: str = "") -> dict | None:
    model = hub.api("GET", f"/users/{username}").json()
    s = model["servers"].get(server)
    return s if s and s["ready"] else None


def my_compute(control, username: str) -> dict:
    [compute] = instances_of(control, HUB_ID, username)
    return compute


def test_spawn_creates_the_users_own_instance_and_redirects_to_it(hub, fast, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    since = fast.mark()
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
    since = fast.mark()
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
    assert r.status_code == 403  # a failure within the first seconds is the API's answer
    message = r.json()["message"]
    assert "no quota left for this machine size" in message
    assert "standardNCSv3Family" in message and "Traceback" not in message
    assert hub.api("GET", f"/users/{ALICE.username}").json()["servers"].get("gpu") is None


def test_named_servers_get_distinct_instances(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username)
    spawn(hub, CAROL.username, {"profile": "memory"}, server="big")
    computes = instances_of(fast, HUB_ID, CAROL.username) + instances_of(fast, HUB_ID, CAROL.username, "big")
    assert len(computes) == 2
    assert {c["tags"]["aml-jupyterhub-server"] for c in computes} == {"", "big"}
    assert {c["id"].split("/workspaces/")[1].split("/")[0] for c in computes} == {"ws-research", "ws-analytics"}
    stop(hub, CAROL.username, "big")
    stop(hub, CAROL.username)


def test_collision_with_someone_elses_instance_is_refused(hub, fast, ca_bundle, ml_client_factory):
    """Bob's derived name already belongs to alice's instance: never a takeover."""
    from azure.ai.ml.entities import AssignedUserConfiguration, ComputeInstance

    from aml_jupyterhub.spawner.slugs import compute_instance_name

    signed_in(hub, BOB, ca_bundle)
    taken = compute_instance_name("jh", BOB.username, BOB.oid, "", "memory", "demo")
    alices = ComputeInstance(
        name=taken,
        size="Standard_E4ds_v4",
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=ALICE.tenant_id, user_object_id=ALICE.oid),
    )
    ml_client_factory(ALICE.username, 1).compute.begin_create_or_update(alices).result()
    r = hub.api("POST", f"/users/{BOB.username}/server", json={"user_options": {"profile": "memory"}})
    assert r.status_code == 409
    assert "belongs to someone else" in r.json()["message"]
    assert fast.arm_compute(taken)["properties"]["properties"]["state"] == "Running"  # untouched


def test_create_failure_is_explained(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    fast.update_settings(timings={**FAST, "create": 3.0})  # fail after the slow-spawn point: seen via progress
    fast.arm_fail_next("create", "CreateFailed", code="AllocationFailed", message="No capacity in eastus.")
    r = hub.api("POST", f"/users/{BOB.username}/servers/fails", json={"user_options": {"profile": "small"}})
    assert r.status_code == 202
    events = progress_events(hub, BOB.username, "fails")
    assert any("Creating your compute instance" in e for e in events)
    assert "No capacity in eastus" in events[-1] and '"failed": true' in events[-1]
    assert "Traceback" not in "".join(events)


def test_running_servers_survive_a_hub_restart(hub, fast, ca_bundle):
    session = signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username)
    name = my_compute(fast, CAROL.username)["name"]
    hub.restart()
    assert server_ready(hub, CAROL.username) is not None
    r = session.get(f"{hub.url}/user/{CAROL.username}/lab", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and name in r.headers["Location"]
    stop(hub, CAROL.username)


def test_polling_cost_does_not_grow_with_users(hub, fast, ca_bundle):
    """poll() reads a shared cache: ARM reads over a window depend on workspaces, not users."""
    for user in (ALICE, BOB):
        signed_in(hub, user, ca_bundle)
        spawn(hub, user.username, server="poll")
    since = fast.mark()
    wait_for(lambda: fast.now() - since > 5, 10, 0.5, "a 5 s window")
    reads = fast.request_counts(since=since, service="arm")["by_route"].get("arm GET ComputeList", 0)
    # poll interval 0.5 s, two users, one workspace: about one list per interval, not per user
    assert 4 <= reads <= 14, reads
    for user in (ALICE, BOB):
        stop(hub, user.username, "poll")


def test_reconciler_stops_orphans_but_not_owned_instances(hub, fast, ca_bundle, ml_client_factory):
    from azure.ai.ml.entities import AssignedUserConfiguration, ComputeInstance

    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username, server="keep")  # owned by a running server
    kept = [c for c in fast.arm_computes() if c["tags"].get("aml-jupyterhub-server") == "keep"][0]["name"]
    orphan = ComputeInstance(
        name="jh-orphan-" + kept[-6:],
        size="Standard_DS3_v2",
        tags={"aml-jupyterhub-hub": "demo", "aml-jupyterhub-user": ALICE.username, "aml-jupyterhub-server": "gone"},
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=ALICE.tenant_id, user_object_id=ALICE.oid),
    )
    foreign = ComputeInstance(
        name="other-hub-" + kept[-6:],
        size="Standard_DS3_v2",
        tags={"aml-jupyterhub-hub": "another-hub", "aml-jupyterhub-user": ALICE.username},
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=ALICE.tenant_id, user_object_id=ALICE.oid),
    )
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(orphan).result()
    ml.compute.begin_create_or_update(foreign).result()
    state = lambda name: fast.arm_compute(name)["properties"]["properties"]["state"]  # noqa: E731
    wait_for(lambda: state(orphan.name) == "Stopped", 30, 0.2, "the orphan to be stopped")
    assert state(kept) == "Running"
    assert state(foreign.name) == "Running"  # another hub's instance is not ours to stop
    assert "Reconciler: stopped 1 orphaned compute instance(s)" in hub.logs()
    stop(hub, ALICE.username, "keep")


def test_cancelled_spawn_leaves_nothing_running(hub, fast, ca_bundle):
    """The user cancels while the instance is still being created: it must not keep running (and billing)."""
    signed_in(hub, BOB, ca_bundle)
    fast.update_settings(timings={**FAST, "create": 3.0})
    r = hub.api("POST", f"/users/{BOB.username}/servers/cancel", json={"user_options": {"profile": "small"}})
    assert r.status_code == 202
    name = wait_for(
        lambda: next((c["name"] for c in fast.arm_computes() if c["tags"].get("aml-jupyterhub-server") == "cancel"
                      and c["tags"].get("aml-jupyterhub-user") == BOB.username), None), 10, 0.1, "the instance")
    assert hub.api("DELETE", f"/users/{BOB.username}/servers/cancel").status_code in (202, 204)
    wait_for(lambda: "cancel" not in hub.api("GET", f"/users/{BOB.username}").json()["servers"], 30, 0.2, "cancel")
    state = lambda: fast.arm_compute(name)["properties"]["properties"]["state"]  # noqa: E731
    wait_for(lambda: state() == "Stopped", 30, 0.2, "the orphaned instance to be stopped")


def test_spawn_in_progress_resumes_after_a_hub_restart(hub, fast, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    fast.update_settings(timings={**FAST, "create": 6.0})
    r = hub.api("POST", f"/users/{ALICE.username}/servers/resume", json={"user_options": {"profile": "small"}})
    assert r.status_code == 202
    wait_for(lambda: any(c["tags"].get("aml-jupyterhub-server") == "resume" for c in fast.arm_computes()), 10, 0.1, "create")
    hub.restart()
    ready = wait_for(lambda: server_ready(hub, ALICE.username, "resume"), 60, 0.2, "the resumed server")
    assert ready["ready"]
    r = session.get(f"{hub.url}/user/{ALICE.username}/resume/lab", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "instances.azureml.ms/lab" in r.headers["Location"]
    stop(hub, ALICE.username, "resume")
