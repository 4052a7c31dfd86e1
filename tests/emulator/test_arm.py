"""The emulated ARM compute service, through the real azure-ai-ml MLClient and raw REST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from azure.ai.ml.entities import AssignedUserConfiguration, ComputeInstance, ScriptReference, SetupScripts
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.client import EmulatorControl
from support.arm_fixtures import ARM_SCOPE, FAST
from support.hub import wait_for

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "aml-compute-rest-2023-08-01-preview"
DIRECTORY = default_config()
ALICE, BOB, CAROL, EVE = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol", "eve"))
WS = DIRECTORY.workspaces[0]
API = "api-version=2023-08-01-preview"


def instance(name: str, owner=ALICE, size: str = "Standard_DS3_v2", **kwargs) -> ComputeInstance:
    return ComputeInstance(
        name=name,
        size=size,
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=owner.tenant_id, user_object_id=owner.oid),
        idle_time_before_shutdown_minutes=30,
        **kwargs,
    )


def arm(emulator, control: EmulatorControl, method: str, path: str, user=ALICE, **kwargs) -> requests.Response:
    token = control.mint_token(user.username, ARM_SCOPE)
    url = f"{emulator.endpoints['arm']}{path}{'&' if '?' in path else '?'}{API}"
    return requests.request(
        method, url, headers={"Authorization": f"Bearer {token}"}, verify=emulator.endpoints["ca_bundle"], timeout=30, **kwargs
    )


def keys_missing(reference, actual, path="") -> list[str]:
    """Keys of the reference example that the actual body lacks (recursively)."""
    if not isinstance(reference, dict):
        return []
    missing = []
    for key, value in reference.items():
        if not isinstance(actual, dict) or key not in actual:
            missing.append(path + key)
        else:
            missing += keys_missing(value, actual[key], f"{path}{key}.")
    return missing


def test_personal_instance_life_cycle_through_mlclient(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    since = fast_computes.now()
    startup = SetupScripts(startup_script=ScriptReference(path="setup.sh", timeout_minutes=5))
    created = ml.compute.begin_create_or_update(instance(compute_name, setup_scripts=startup)).result()
    assert created.state == "Running"
    got = ml.compute.get(compute_name)
    assert got.create_on_behalf_of.user_object_id == ALICE.oid
    assert {s["displayName"] for s in got.services} == {"Jupyter", "Jupyter Lab"}
    ml.compute.begin_stop(compute_name).result()
    assert ml.compute.get(compute_name).state == "Stopped"
    ml.compute.begin_start(compute_name).result()
    assert ml.compute.get(compute_name).state == "Running"
    ml.compute.begin_delete(compute_name).result()
    with pytest.raises(ResourceNotFoundError):
        ml.compute.get(compute_name)
    routes = fast_computes.request_counts(since=since, service="arm")["by_route"]
    assert routes["arm GET WorkspaceItem"] == 1  # create reads the workspace's location first
    assert routes["arm PUT ComputeItem"] == 1 and routes["arm DELETE ComputeItem"] == 1
    assert routes["arm POST ComputeAction"] == 2 and routes["arm GET OperationStatus"] >= 4


def test_setup_scripts_pass_through_setting_up(emulator, fast_computes, compute_name, ml_client_factory):
    seen: list[str] = []
    emulator.state.runtime.setdefault("compute_listeners", []).append(lambda r: seen.append(r["properties"]["properties"]["state"]))
    try:
        startup = SetupScripts(startup_script=ScriptReference(path="setup.sh", timeout_minutes=5))
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name, setup_scripts=startup)).result()
    finally:
        emulator.state.runtime["compute_listeners"].clear()
    assert seen == ["Creating", "SettingUp", "Running"]


def test_responses_have_the_reference_shapes(emulator, fast_computes, compute_name):
    reference_put = json.loads((REFERENCE / "createOrUpdate-ComputeInstance.json").read_text())
    reference_get = json.loads((REFERENCE / "get-ComputeInstance.json").read_text())
    body = reference_put["parameters"]["parameters"]
    body["properties"]["properties"]["vmSize"] = "Standard_DS3_v2"
    body["properties"]["properties"]["personalComputeInstanceSettings"]["assignedUser"] = {"objectId": ALICE.oid, "tenantId": ALICE.tenant_id}
    path = f"{WS.arm_id}/computes/{compute_name}"
    put = arm(emulator, fast_computes, "PUT", path, json=body)
    assert put.status_code == 201
    assert put.headers["Azure-AsyncOperation"].startswith(emulator.endpoints["arm"])
    assert keys_missing(reference_put["responses"]["201"]["body"], put.json()) == []
    status = requests.get(put.headers["Azure-AsyncOperation"], headers={"Authorization": put.request.headers["Authorization"]}, verify=emulator.endpoints["ca_bundle"], timeout=10)
    assert status.json()["status"] in ("InProgress", "Succeeded")
    wait_for(lambda: arm(emulator, fast_computes, "GET", path).json()["properties"]["properties"]["state"] == "Running", 10)
    got = arm(emulator, fast_computes, "GET", path).json()
    assert keys_missing(reference_get["responses"]["200"]["body"], got) == []
    stop = arm(emulator, fast_computes, "POST", path + "/stop")
    assert stop.status_code == 202 and "Location" in stop.headers  # start.json: 202 with Location
    wait_for(lambda: arm(emulator, fast_computes, "GET", path).json()["properties"]["properties"]["state"] == "Stopped", 10)
    assert arm(emulator, fast_computes, "DELETE", path + "?underlyingResourceAction=Delete").status_code == 202
    wait_for(lambda: arm(emulator, fast_computes, "GET", path).status_code == 404, 10)
    assert arm(emulator, fast_computes, "DELETE", path).status_code == 204  # delete.json: 204 when gone


def test_name_taken_in_the_region_is_a_conflict(ml_client_factory, compute_name):
    ml_client_factory(ALICE.username, 0).compute.begin_create_or_update(instance(compute_name)).result()
    with pytest.raises(ResourceExistsError, match="unique per region"):
        ml_client_factory(BOB.username, 1).compute.begin_create_or_update(instance(compute_name, owner=BOB))


def test_unknown_compute_is_not_found(ml_client_factory):
    with pytest.raises(ResourceNotFoundError):
        ml_client_factory(ALICE.username).compute.get("nosuchcompute")


def test_permissions(ml_client_factory, compute_name):
    with pytest.raises(HttpResponseError) as no_role:
        ml_client_factory(EVE.username).compute.get("anything")
    assert no_role.value.status_code == 403 and no_role.value.error.code == "AuthorizationFailed"
    ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    with pytest.raises(HttpResponseError) as not_yours:
        ml_client_factory(BOB.username).compute.begin_stop(compute_name)
    assert not_yours.value.status_code == 403 and "computes/stop/action" in str(not_yours.value)
    with pytest.raises(HttpResponseError) as on_behalf:
        ml_client_factory(BOB.username).compute.begin_create_or_update(instance(compute_name + "b", owner=ALICE))
    assert on_behalf.value.status_code == 403
    ml_client_factory(CAROL.username).compute.begin_stop(compute_name).result()  # an admin may


def test_expired_token_is_401(emulator, ml_client_factory, fast_computes):
    stale = fast_computes.mint_token(ALICE.username, ARM_SCOPE)
    fast_computes.advance_clock(2 * 3600)
    raw = requests.get(
        f"{emulator.endpoints['arm']}{WS.arm_id}/computes?{API}",
        headers={"Authorization": f"Bearer {stale}"},
        verify=emulator.endpoints["ca_bundle"],
        timeout=10,
    )
    assert raw.status_code == 401 and raw.json()["error"]["code"] == "ExpiredAuthenticationToken"
    assert 'error="invalid_token"' in raw.headers["WWW-Authenticate"]
    ml = ml_client_factory(ALICE.username, credential=StaticCredential(stale))
    with pytest.raises(ClientAuthenticationError):
        ml.compute.get("anything")


def test_throttling_storm_that_clears_then_one_that_does_not(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(instance(compute_name)).result()
    fast_computes.inject(service="arm", route="ComputeItem", method="GET", status=429, retry_after=1, count=2)
    assert ml.compute.get(compute_name).name == compute_name
    fast_computes.inject(service="arm", route="ComputeItem", method="GET", status=429, retry_after=1, count=None)
    with pytest.raises(HttpResponseError) as storm:
        ml.compute.get(compute_name)
    assert storm.value.status_code == 429


def test_server_error_then_success(ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    fast_computes.inject(service="arm", route="WorkspaceItem", status=503, retry_after=0, count=1)
    assert ml.compute.begin_create_or_update(instance(compute_name)).result().state == "Running"


def test_create_failure_surfaces_from_the_poller(ml_client_factory, fast_computes, compute_name):
    fast_computes.arm_fail_next("create", "CreateFailed", compute_name, code="AllocationFailed", message="No capacity.")
    with pytest.raises(HttpResponseError, match="No capacity"):
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    resource = fast_computes.arm_compute(compute_name)
    assert resource["properties"]["properties"]["state"] == "CreateFailed"
    assert resource["properties"]["properties"]["errors"][0]["error"]["code"] == "AllocationFailed"


def test_quota_exceeded(ml_client_factory, compute_name):
    with pytest.raises(HttpResponseError) as e:
        ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name, size="Standard_NC6s_v3"))
    assert e.value.status_code == 400 and e.value.error.code == "QuotaExceeded"


@pytest.mark.parametrize("name", ["1abc", "ab", "abc-123", "a" * 25, "ab_c"])
def test_name_rules(emulator, fast_computes, name):
    body = {"properties": {"computeType": "ComputeInstance", "properties": {"vmSize": "Standard_DS3_v2"}}}
    r = arm(emulator, fast_computes, "PUT", f"{WS.arm_id}/computes/{name}", json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "ValidationError"


def test_start_only_from_stopped(emulator, ml_client_factory, compute_name):
    ml_client_factory(ALICE.username).compute.begin_create_or_update(instance(compute_name)).result()
    r = arm(emulator, EmulatorControl(emulator.endpoints["control"], emulator.endpoints["ca_bundle"]), "POST", f"{WS.arm_id}/computes/{compute_name}/start")
    assert r.status_code == 409 and "while it is Running" in r.json()["error"]["message"]


def test_forcing_every_state(emulator, ml_client_factory, fast_computes, compute_name):
    ml = ml_client_factory(ALICE.username)
    ml.compute.begin_create_or_update(instance(compute_name)).result()
    for state in ("Unusable", "JobRunning", "UserSetupFailed", "Unknown"):
        fast_computes.arm_force_state(compute_name, state)
        assert ml.compute.get(compute_name).state == state


def test_read_throttling_per_principal(emulator, fast_computes):
    fast_computes.update_settings(throttle={"read_burst": 3, "read_rate": 0.2})
    path = f"{WS.arm_id}/computes"
    answers = [arm(emulator, fast_computes, "GET", path, user=BOB) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[0].headers["x-ms-ratelimit-remaining-subscription-reads"] == "2"
    assert arm(emulator, fast_computes, "GET", path, user=CAROL).status_code == 200  # another principal's bucket


def test_transitions_survive_an_emulator_restart(tmp_path):
    data = tmp_path / "state"
    first = EmulatorThread(config=default_config(), data_dir=data)
    endpoints = first.start()
    control = EmulatorControl(endpoints["control"], endpoints["ca_bundle"])
    control.update_settings(timings={**FAST, "create": 2.0})
    body = {"properties": {"computeType": "ComputeInstance", "properties": {"vmSize": "Standard_DS3_v2"}}}
    assert arm(first, control, "PUT", f"{WS.arm_id}/computes/restartme", json=body).status_code == 201
    first.stop()
    second = EmulatorThread(config=default_config(), data_dir=data)
    endpoints = second.start()
    try:
        control = EmulatorControl(endpoints["control"], endpoints["ca_bundle"])
        assert control.arm_compute("restartme")["properties"]["properties"]["state"] == "Creating"
        wait_for(lambda: control.arm_compute("restartme")["properties"]["properties"]["state"] == "Running", 15)
    finally:
        second.stop()


class StaticCredential:
    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        return AccessToken(self.token, 2**31)
