"""The emulated ARM compute service through the real azure-ai-ml MLClient (1.35.x), as real users."""

from __future__ import annotations

import itertools
import time

import pytest
from azure.ai.ml.entities import AssignedUserConfiguration, ComputeInstance, ScriptReference, SetupScripts
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError

from aml_jupyterhub.emulator import default_config
from support.arm_fixtures import ARM_SCOPE, StaticCredential, unique_name

DIRECTORY = default_config()
ALICE, BOB, CAROL, EVE = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol", "eve"))


def instance(name: str, owner=ALICE, size: str = "Standard_DS3_v2", **kwargs) -> ComputeInstance:
    """A personal compute instance assigned to ``owner``."""
    return ComputeInstance(
        name=name,
        size=size,
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=owner.tenant_id, user_object_id=owner.oid),
        idle_time_before_shutdown_minutes=30,
        **kwargs,
    )


def calls(control, since: float, principal: str) -> list[str]:
    """``"METHOD Route"`` of ``principal``'s ARM requests since ``since``, repeated polls collapsed into one."""
    log = [f"{r['method']} {r['route']}" for r in control.requests(since=since, service="arm") if r["principal"] == principal]
    return [call for call, _ in itertools.groupby(log)]


def test_personal_instance_life_cycle_and_its_requests(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(CAROL.username)  # an admin creating alice's instance for her
    mine = ml_client_factory(ALICE.username)
    since = fast_computes.mark()
    startup = SetupScripts(startup_script=ScriptReference(path="setup/startup.sh", timeout_minutes=5))
    created = ml.compute.begin_create_or_update(instance(compute_name, setup_scripts=startup)).result()
    assert created.state == "Running" and created.provisioning_state == "Succeeded"
    assert created.create_on_behalf_of.user_object_id == ALICE.oid
    assert created.idle_time_before_shutdown_minutes == 30
    assert created.setup_scripts.startup_script.path == "setup/startup.sh"
    got = mine.compute.get(compute_name)
    assert {s["displayName"]: s["endpointUri"] for s in got.services} == {
        "Jupyter": f"https://{compute_name}.eastus.instances.azureml.ms/tree/",
        "Jupyter Lab": f"https://{compute_name}.eastus.instances.azureml.ms/lab",
    }
    assert fast_computes.arm_compute(compute_name)["properties"]["properties"]["createdBy"]["userName"] == CAROL.username
    mine.compute.begin_stop(compute_name).result()
    assert mine.compute.get(compute_name).state == "Stopped"
    mine.compute.begin_start(compute_name).result()
    assert mine.compute.get(compute_name).state == "Running"
    mine.compute.begin_restart(compute_name).result()
    assert mine.compute.get(compute_name).last_operation["operationName"] == "Restart"
    mine.compute.begin_delete(compute_name).result()
    with pytest.raises(ResourceNotFoundError):
        mine.compute.get(compute_name)
    assert calls(fast_computes, since, CAROL.username) == [
        "GET WorkspaceItem",  # MLClient reads the workspace's location first
        "PUT ComputeItem",
        "GET OperationStatus",
        "GET ComputeItem",  # the poller's final GET
    ]
    action = ["POST ComputeAction", "GET OperationStatus", "GET OperationResult"]  # the poller ends on Location
    assert calls(fast_computes, since, ALICE.username) == [
        "GET ComputeItem",
        *action,  # stop
        "GET ComputeItem",
        *action,  # start
        "GET ComputeItem",
        *action,  # restart
        "GET ComputeItem",
        "DELETE ComputeItem",
        "GET OperationStatus",
        "GET ComputeItem",  # 404
    ]


def test_setup_scripts_pass_through_setting_up(emulator, ml_client_factory, compute_name):
    seen: list[str] = []
    listeners = emulator.state.runtime.setdefault("compute_listeners", [])
    listeners.append(lambda r: r["name"] == compute_name and seen.append(r["properties"]["properties"]["state"]))
    try:
        startup = SetupScripts(startup_script=ScriptReference(path="setup.sh", timeout_minutes=5))
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name, setup_scripts=startup)).result()
    finally:
        listeners.clear()
    assert seen == ["Creating", "SettingUp", "Running"]


def test_a_name_taken_in_the_region_is_a_conflict(ml_client_factory, compute_name):
    ml_client_factory(ALICE.username, 0).compute.begin_create_or_update(instance(compute_name)).result()
    with pytest.raises(ResourceExistsError, match="unique per region"):
        ml_client_factory(BOB.username, 1).compute.begin_create_or_update(instance(compute_name, owner=BOB))
    with pytest.raises(ResourceExistsError, match="already exists in workspace"):
        ml_client_factory(ALICE.username, 0).compute.begin_create_or_update(instance(compute_name))


def test_unknown_compute_is_not_found(ml_client_factory):
    ml = ml_client_factory(ALICE.username)
    with pytest.raises(ResourceNotFoundError):
        ml.compute.get("nosuchcompute")
    with pytest.raises(ResourceNotFoundError):
        ml.compute.begin_stop("nosuchcompute")


def test_permissions(ml_client_factory, compute_name):
    with pytest.raises(HttpResponseError) as no_role:
        ml_client_factory(EVE.username).compute.get("anything")
    assert no_role.value.status_code == 403 and no_role.value.error.code == "AuthorizationFailed"
    ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    with pytest.raises(HttpResponseError) as not_yours:
        ml_client_factory(BOB.username).compute.begin_stop(compute_name)
    assert not_yours.value.status_code == 403 and not_yours.value.error.code == "AuthorizationFailed"
    assert "workspaces/computes/stop/action" in not_yours.value.error.message
    with pytest.raises(HttpResponseError) as on_behalf:
        ml_client_factory(BOB.username).compute.begin_create_or_update(instance(unique_name(), owner=ALICE))
    assert on_behalf.value.status_code == 403
    ml_client_factory(CAROL.username).compute.begin_stop(compute_name).result()  # a Contributor may
    assert ml_client_factory(ALICE.username).compute.get(compute_name).state == "Stopped"


def test_expired_token_is_a_client_authentication_error(ml_client_factory, fast_computes):
    stale = fast_computes.mint_token(ALICE.username, ARM_SCOPE, lifetime=-60)  # expired a minute ago
    with pytest.raises(ClientAuthenticationError, match="ExpiredAuthenticationToken"):
        ml_client_factory(ALICE.username, credential=StaticCredential(stale)).compute.get("anything")


def test_throttling_that_clears_is_retried_after_retry_after(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(instance(compute_name)).result()
    fast_computes.update_settings(throttle={"read_burst": 1, "read_rate": 1.0})
    try:
        since = fast_computes.mark()
        started = time.monotonic()
        assert ml.compute.get(compute_name).name == compute_name
        assert ml.compute.get(compute_name).name == compute_name  # 429 Retry-After: 1, then success
        assert time.monotonic() - started >= 0.9
        statuses = fast_computes.request_counts(since=since, service="arm")["by_status"]
        assert statuses.get("429", 0) >= 1 and statuses["200"] == 2
    finally:
        fast_computes.arm_reset_throttle()


def test_throttling_that_does_not_clear_surfaces_as_429(ml_client_factory, fast_computes, compute_name):
    fast_computes.inject(service="arm", route="ComputeItem", method="GET", status=429, retry_after=1, count=None)
    with pytest.raises(HttpResponseError) as storm:
        ml_client_factory(ALICE.username).compute.get(compute_name)
    assert storm.value.status_code == 429
    assert fast_computes.faults()[0]["hits"] == 4  # the first try and three retries


def test_server_error_then_success(ml_client_factory, fast_computes, compute_name):
    fast_computes.inject(service="arm", route="ComputeItem", method="PUT", status=500, retry_after=0, count=1)
    created = ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    assert created.state == "Running"
    assert fast_computes.faults()[0]["hits"] == 1


def test_create_failure_surfaces_from_the_poller(ml_client_factory, fast_computes, compute_name):
    fast_computes.arm_fail_next("create", "CreateFailed", compute_name, code="AllocationFailed", message="No capacity.")
    with pytest.raises(HttpResponseError, match="No capacity"):
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    resource = fast_computes.arm_compute(compute_name)
    assert resource["properties"]["provisioningState"] == "Failed"
    assert resource["properties"]["properties"]["state"] == "CreateFailed"
    assert resource["properties"]["properties"]["errors"][0]["error"]["code"] == "AllocationFailed"


def test_start_from_running_is_refused(ml_client_factory, compute_name):
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(instance(compute_name)).result()
    with pytest.raises(HttpResponseError) as refused:
        ml.compute.begin_start(compute_name)
    assert refused.value.status_code == 400 and refused.value.error.code == "StartComputeInstanceOnlyAllowedInStoppedState"


def test_quota_exceeded(ml_client_factory, compute_name):
    with pytest.raises(HttpResponseError) as e:
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name, size="Standard_NC6s_v3"))
    assert e.value.status_code == 400 and e.value.error.code == "QuotaExceeded"
    assert "vCPU quota of 0" in e.value.error.message


def test_list_follows_next_link(ml_client_factory, fast_computes):
    ml = ml_client_factory(BOB.username, 1)
    names = {unique_name("ls") for _ in range(2)}
    pollers = [ml.compute.begin_create_or_update(instance(name, owner=BOB)) for name in names]
    fast_computes.arm_set_page_size(1)
    try:
        since = fast_computes.mark()
        listed = [c.name for c in ml.compute.list()]
    finally:
        fast_computes.arm_set_page_size(100)
    assert names <= set(listed) and len(listed) == len(set(listed))
    pages = [r for r in fast_computes.requests(since=since, service="arm") if r["route"] == "ComputeList" and r["principal"] == BOB.username]
    assert len(pages) == len(listed)  # one compute per page, every nextLink followed
    assert all(p.result().name in names for p in pollers)


def test_forced_states_show_through_the_sdk(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(instance(compute_name)).result()
    for state in ("Unusable", "JobRunning", "UserSetupFailed", "Unknown"):
        fast_computes.arm_force_state(compute_name, state)
        assert ml.compute.get(compute_name).state == state
