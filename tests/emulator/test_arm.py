"""The emulated ARM compute service over raw REST: shapes against the reference examples, headers, rules, throttling.

The real MLClient against the same service is in ``test_arm_sdk.py``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from azure.ai.ml._restclient.arm_ml_service.models import ComputeInstanceState

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.emulator.arm.model import STATES
from support.arm_fixtures import ARM_SCOPE, FAST, arm_request, unique_name
from support.hub import wait_for

# The official REST examples, kept in the repository (tests/reference/README.md names their source and licence).
REFERENCE = Path(__file__).resolve().parents[1] / "reference" / "aml-compute-rest-2023-08-01-preview"
DIRECTORY = default_config()
ALICE, BOB, CAROL, EVE = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol", "eve"))
WS, WS2 = DIRECTORY.workspaces
SIZE = "Standard_DS3_v2"

Call = Callable[..., requests.Response]


def reference(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / f"{name}.json").read_text())


def keys_missing(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Keys of the reference example that the actual body lacks (recursively, into the first list item)."""
    if isinstance(expected, list) and expected:
        return keys_missing(expected[0], actual[0], path + "0.") if isinstance(actual, list) and actual else [path + "0"]
    if not isinstance(expected, dict) or actual is None:  # a null value stands for an absent optional object
        return []
    missing = []
    for key, value in expected.items():
        if not isinstance(actual, dict) or key not in actual:
            missing.append(path + key)
        else:
            missing += keys_missing(value, actual[key], f"{path}{key}.")
    return missing


def headers_missing(expected: dict[str, str], headers: Any) -> list[str]:
    """Header names of the reference example the answer lacks (HTTP header names ignore case)."""
    return [name for name in expected if name not in headers]


def compute_path(name: str, ws=WS) -> str:
    return f"{ws.arm_id}/computes/{name}"


def instance_body(owner=ALICE, size: str = SIZE) -> dict[str, Any]:
    assigned = {"objectId": owner.oid, "tenantId": owner.tenant_id}
    props = {"vmSize": size, "personalComputeInstanceSettings": {"assignedUser": assigned}}
    return {"location": "eastus", "properties": {"computeType": "ComputeInstance", "properties": props}}


def state_of(arm_call: Call, name: str, ws=WS) -> str | None:
    r = arm_call("GET", compute_path(name, ws))
    return r.json()["properties"]["properties"]["state"] if r.status_code == 200 else None


def wait_state(arm_call: Call, name: str, state: str | None, ws=WS, timeout: float = 10) -> None:
    wait_for(lambda: state_of(arm_call, name, ws) == state, timeout, 0.05, f"{name} {state}")


def create(arm_call: Call, name: str, owner=ALICE, user=None, ws=WS, size: str = SIZE, wait: bool = True) -> requests.Response:
    """PUT a personal instance (by ``user``, default its owner) and wait until it runs."""
    r = arm_call("PUT", compute_path(name, ws), user=(user or owner).username, json=instance_body(owner, size))
    assert r.status_code == 201, r.text
    if wait:
        wait_state(arm_call, name, "Running", ws)
    return r


# -- workspace and errors before any compute -----------------------------------------------------
def test_workspace_get_has_the_fields_clients_read(arm_call):
    r = arm_call("GET", WS.arm_id)
    assert r.status_code == 200
    body = r.json()
    assert (body["id"], body["name"], body["location"]) == (WS.arm_id, WS.name, "eastus")
    assert body["type"] == "Microsoft.MachineLearningServices/workspaces"
    assert {"sku", "kind", "identity", "systemData"} <= set(body)
    assert body["identity"]["principalId"] and body["properties"]["tenantId"] == ALICE.tenant_id
    props = body["properties"]
    assert props["provisioningState"] == "Succeeded" and props["discoveryUrl"] == "https://eastus.api.azureml.ms/discovery"
    assert re.fullmatch(r"[0-9a-f-]{36}", props["workspaceId"])
    assert int(r.headers["x-ms-ratelimit-remaining-subscription-reads"]) > 0
    assert r.headers["x-ms-request-id"] and r.headers["x-ms-routing-request-id"]
    shouted = arm_call("GET", WS.arm_id.upper())  # ARM matches paths case-insensitively
    assert shouted.status_code == 200 and shouted.json()["id"] == WS.arm_id


def test_missing_api_version_and_unknown_workspace(arm_call):
    r = arm_call("GET", WS.arm_id, api_version=None)
    assert r.status_code == 400 and r.json()["error"]["code"] == "MissingApiVersionParameter"
    missing = arm_call("GET", WS.arm_id.replace(WS.name, "ws-nope"))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": "ResourceNotFound",
        "message": "The Resource 'Microsoft.MachineLearningServices/workspaces/ws-nope' under resource group 'rg-ml' was "
        "not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    }
    assert "x-ms-ratelimit-remaining-subscription-reads" in missing.headers  # on errors too
    group = arm_call("GET", WS.arm_id.replace("rg-ml", "rg-nope"))
    assert group.status_code == 404 and group.json()["error"]["code"] == "ResourceGroupNotFound"
    compute = arm_call("GET", compute_path("nosuchcompute"))
    assert compute.status_code == 404 and "computes/nosuchcompute' under resource group" in compute.json()["error"]["message"]


# -- shapes and long-running operations -----------------------------------------------------------
def test_put_get_and_operation_urls_follow_the_reference(emulator, arm_call, fast_computes, compute_name):
    fast_computes.update_settings(timings={"create": 1.0, "lro_retry_after": 2})
    example = reference("createOrUpdate-ComputeInstance")
    body = example["parameters"]["parameters"]
    body["properties"]["properties"] |= {"vmSize": SIZE, "subnet": None}
    body["properties"]["properties"]["personalComputeInstanceSettings"]["assignedUser"] = {"objectId": ALICE.oid, "tenantId": ALICE.tenant_id}
    put = arm_call("PUT", compute_path(compute_name), json=body)
    assert put.status_code == 201
    assert keys_missing(example["responses"]["201"]["body"], put.json()) == []
    assert put.json()["properties"]["provisioningState"] == "Creating"
    assert put.headers["Retry-After"] == "2"
    status_url, result_url = put.headers["Azure-AsyncOperation"], put.headers["Location"]
    assert status_url.startswith(emulator.endpoints["arm"] + "/subscriptions/") and "computeOperationsStatus" in status_url
    status = arm_call("GET", status_url)
    assert status.status_code == 200 and status.json()["status"] == "InProgress" and status.headers["Retry-After"] == "2"
    assert {"id", "name", "status", "startTime"} <= set(status.json())
    pending = arm_call("GET", result_url)
    assert pending.status_code == 202 and pending.headers["Location"]

    wait_for(lambda: arm_call("GET", status_url).json()["status"] == "Succeeded", 10, 0.05, "create succeeded")
    assert arm_call("GET", status_url).json()["endTime"]
    done = arm_call("GET", result_url)
    assert done.status_code == 200 and done.json()["name"] == compute_name
    got = arm_call("GET", compute_path(compute_name)).json()
    assert keys_missing(reference("get-ComputeInstance")["responses"]["200"]["body"], got) == []
    props = got["properties"]["properties"]
    assert got["properties"]["provisioningState"] == "Succeeded" and props["state"] == "Running"
    assert props["createdBy"] == {"userName": ALICE.username, "userOrgId": ALICE.tenant_id, "userId": ALICE.oid}
    assert props["applications"] == [
        {"displayName": "Jupyter", "endpointUri": f"https://{compute_name}.eastus.instances.azureml.ms/tree/"},
        {"displayName": "Jupyter Lab", "endpointUri": f"https://{compute_name}.eastus.instances.azureml.ms/lab"},
    ]
    assert props["lastOperation"]["operationName"] == "Create" and props["lastOperation"]["operationStatus"] == "Succeeded"


def test_start_stop_restart_answer_202_and_refuse_the_wrong_state(arm_call, fast_computes, compute_name):
    create(arm_call, compute_name)
    fast_computes.update_settings(timings={"start": 0.8, "stop": 0.8, "restart": 0.8})  # time to see the transient states
    path = compute_path(compute_name)
    stop = arm_call("POST", path + "/stop")
    assert stop.status_code == 202 and not stop.content
    assert headers_missing(reference("start")["responses"]["202"]["headers"], stop.headers) == []
    assert "computeOperationsStatus" in stop.headers["Azure-AsyncOperation"] and "Retry-After" not in stop.headers
    assert state_of(arm_call, compute_name) == "Stopping"
    wait_state(arm_call, compute_name, "Stopped")
    for action in ("stop", "restart"):
        refused = arm_call("POST", f"{path}/{action}")
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == f"{action.capitalize()}ComputeInstanceOnlyAllowedInRunningState"
    assert arm_call("POST", path + "/start").status_code == 202
    assert state_of(arm_call, compute_name) == "Starting"
    wait_state(arm_call, compute_name, "Running")
    again = arm_call("POST", path + "/start")
    assert again.status_code == 400
    assert again.json()["error"] == {
        "code": "StartComputeInstanceOnlyAllowedInStoppedState",
        "message": f"Start Azure ML Compute Instance is only allowed when the instance {compute_name} is in 'stopped' state",
    }
    assert arm_call("POST", path + "/RESTART").status_code == 202  # action names are case-insensitive too
    assert state_of(arm_call, compute_name) == "Restarting"
    wait_state(arm_call, compute_name, "Running")
    assert arm_call("GET", path).json()["properties"]["properties"]["lastOperation"]["operationName"] == "Restart"


def test_delete_is_202_then_gone_then_204(arm_call, fast_computes, compute_name):
    create(arm_call, compute_name)
    path = compute_path(compute_name)
    fast_computes.update_settings(timings={"delete": 1.0})
    no_action = arm_call("DELETE", path)
    assert no_action.status_code == 400 and "underlyingResourceAction" in no_action.json()["error"]["message"]
    first = arm_call("DELETE", path + "?underlyingResourceAction=Delete")
    assert first.status_code == 202
    assert headers_missing(reference("delete")["responses"]["202"]["headers"], first.headers) == []
    assert arm_call("GET", path).json()["properties"]["provisioningState"] == "Deleting"
    second = arm_call("DELETE", path + "?underlyingResourceAction=Delete")
    assert second.headers["Azure-AsyncOperation"] == first.headers["Azure-AsyncOperation"]  # the same operation
    wait_for(lambda: arm_call("GET", path).status_code == 404, 10, 0.05, "deleted")
    assert arm_call("GET", first.headers["Azure-AsyncOperation"]).json()["status"] == "Succeeded"
    assert arm_call("GET", first.headers["Location"]).status_code == 204
    assert arm_call("DELETE", path + "?underlyingResourceAction=Delete").status_code == 204


def test_list_pages_with_next_link(emulator, arm_call, fast_computes):
    names = {unique_name("pg") for _ in range(3)}
    for name in names:
        create(arm_call, name, ws=WS2, wait=False)
    fast_computes.arm_set_page_size(2)
    try:
        pages = [arm_call("GET", f"{WS2.arm_id}/computes").json()]
        while "nextLink" in pages[-1]:
            assert pages[-1]["nextLink"].startswith(emulator.endpoints["arm"] + WS2.arm_id)
            pages.append(arm_call("GET", pages[-1]["nextLink"]).json())
    finally:
        fast_computes.arm_set_page_size(100)
    listed = [c["name"] for page in pages for c in page["value"]]
    assert len(pages) >= 2 and all(len(page["value"]) <= 2 for page in pages)
    assert names <= set(listed) and len(listed) == len(set(listed))
    assert all(c["id"].startswith(WS2.arm_id + "/computes/") for page in pages for c in page["value"])


def test_idle_shutdown_and_data_mounts_are_kept_on_the_resource(arm_call, compute_name):
    create(arm_call, compute_name, wait=False)
    path = compute_path(compute_name)
    assert arm_call("POST", path + "/updateIdleShutdownSetting", json={"idleTimeBeforeShutdown": "PT45M"}).status_code == 200
    for bad in ("PT5M", "P4D", "soon"):
        r = arm_call("POST", path + "/updateIdleShutdownSetting", json={"idleTimeBeforeShutdown": bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == "ValidationError", bad
    mounts = reference("updateDataMounts")["parameters"]["dataMounts"]
    assert arm_call("POST", path + "/updateDataMounts", json=mounts).status_code == 200
    assert arm_call("POST", path + "/updateDataMounts", json={"source": "x"}).status_code == 400
    props = arm_call("GET", path).json()["properties"]["properties"]
    assert props["idleTimeBeforeShutdown"] == "PT45M" and props["dataMounts"] == mounts


# -- rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["1abc", "ab", "abc-123", "abc-", "a" * 25, "ab_c", "ab.c"])
def test_invalid_names_are_refused(arm_call, name):
    r = arm_call("PUT", compute_path(name), json=instance_body())
    assert r.status_code == 400 and r.json()["error"]["code"] == "ValidationError"
    assert "3 to 24 characters" in r.json()["error"]["message"]


def test_a_dash_followed_later_by_a_letter_is_a_valid_name(arm_call):
    name = unique_name("v")[:18] + "-12ab"
    assert arm_call("PUT", compute_path(name), json=instance_body()).status_code == 201


def test_names_are_unique_in_the_region(arm_call, compute_name):
    create(arm_call, compute_name, wait=False)
    same = arm_call("PUT", compute_path(compute_name), json=instance_body())
    assert same.status_code == 409 and f"already exists in workspace '{WS.name}'" in same.json()["error"]["message"]
    other = arm_call("PUT", compute_path(compute_name, WS2), user=BOB.username, json=instance_body(BOB))
    assert other.status_code == 409 and "unique per region" in other.json()["error"]["message"]


def holds_quota(compute: dict) -> bool:
    props = compute["properties"]["properties"]
    if props["state"] == "Stopped":
        return props.get("releaseQuotaOnStop") is not True
    return props["state"] not in ("CreateFailed", "Deleting")


def test_vcpu_quota_is_held_by_stopped_instances_and_released_only_on_request(arm_call, fast_computes):
    family, size = "standardEDv4Family", "Standard_E4ds_v4"
    used = sum(4 for c in fast_computes.arm_computes() if c["properties"]["properties"]["vmSize"] == size and holds_quota(c))
    fast_computes.update_settings(core_quotas={f"{WS.subscription_id}/eastus/{family}": used + 4})
    first, second = unique_name("qa"), unique_name("qb")
    create(arm_call, first, size=size)
    refused = arm_call("PUT", compute_path(second), json=instance_body(size=size))
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "QuotaExceeded"
    assert f"{family} vCPU quota of {used + 4}" in refused.json()["error"]["message"]
    assert arm_call("POST", compute_path(first) + "/stop").status_code == 202
    wait_state(arm_call, first, "Stopped")
    # "Stopping the compute instance doesn't release quota to ensure you are able to restart it."
    still = arm_call("PUT", compute_path(second), json=instance_body(size=size))
    assert still.status_code == 400 and still.json()["error"]["code"] == "QuotaExceeded"
    assert arm_call("POST", compute_path(first) + "/start").status_code == 202  # its own cores are kept for it
    wait_state(arm_call, first, "Running")
    assert arm_call("POST", compute_path(first) + "/stop").status_code == 202
    wait_state(arm_call, first, "Stopped")
    # An instance created with releaseQuotaOnStop gives its cores back when stopped, and needs quota to start.
    third = unique_name("qc")
    body = instance_body(size=size)
    body["properties"]["properties"]["releaseQuotaOnStop"] = True
    assert arm_call("DELETE", compute_path(first) + "?underlyingResourceAction=Delete").status_code in (200, 202)
    wait_state(arm_call, first, None)
    assert arm_call("PUT", compute_path(third), json=body).status_code == 201
    wait_state(arm_call, third, "Running")
    assert arm_call("POST", compute_path(third) + "/stop").status_code == 202
    wait_state(arm_call, third, "Stopped")
    create(arm_call, second, size=size)  # the released cores
    restart = arm_call("POST", compute_path(third) + "/start")
    assert restart.status_code == 400 and restart.json()["error"]["code"] == "QuotaExceeded"
    unknown = arm_call("PUT", compute_path(unique_name()), json=instance_body(size="Standard_Imaginary_v9"))
    assert unknown.status_code == 400 and "Standard_Imaginary_v9" in unknown.json()["error"]["message"]


# -- authentication and roles ---------------------------------------------------------------------
def test_unauthenticated_requests_get_arms_401s(arm_call, fast_computes):
    path = f"{WS.arm_id}/computes"
    storage_token = fast_computes.mint_token(ALICE.username, "https://storage.azure.com/user_impersonation")
    expired = fast_computes.mint_token(ALICE.username, ARM_SCOPE, lifetime=-60)  # expired a minute ago
    answers = {
        "AuthenticationFailed": arm_call("GET", path, token=""),
        "InvalidAuthenticationToken": arm_call("GET", path, token="not-a-jwt"),
        "InvalidAuthenticationTokenAudience": arm_call("GET", path, token=storage_token),
    }
    answers["ExpiredAuthenticationToken"] = arm_call("GET", path, token=expired)
    for code, r in answers.items():
        assert r.status_code == 401 and r.json()["error"]["code"] == code, (code, r.text)
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer authorization_uri="https://') and 'error="invalid_token"' in challenge
        assert "error_description=" in challenge
    assert "https://storage.azure.com" in answers["InvalidAuthenticationTokenAudience"].json()["error"]["message"]
    assert "is earlier than current UTC time" in answers["ExpiredAuthenticationToken"].json()["error"]["message"]


def test_no_role_is_arms_exact_403(arm_call):
    r = arm_call("GET", f"{WS.arm_id}/computes", user=EVE.username)
    assert r.status_code == 403
    assert r.json()["error"] == {
        "code": "AuthorizationFailed",
        "message": f"The client '{EVE.username}' with object id '{EVE.oid}' does not have authorization to perform action "
        f"'Microsoft.MachineLearningServices/workspaces/computes/read' over scope '{WS.arm_id}' or the scope is invalid. "
        "If access was recently granted, please refresh your credentials.",
    }


def test_roles_decide_what_a_caller_may_do(arm_call, fast_computes):
    bobs = unique_name("bob")
    create(arm_call, bobs, owner=BOB, user=CAROL)  # a Contributor creates it on bob's behalf
    path = compute_path(bobs)
    fast_computes.arm_assign_role(WS.name, BOB.username, "AzureML Data Scientist")
    assert arm_call("POST", path + "/stop", user=BOB.username).status_code == 202  # actions: yes
    denied_write = arm_call("PUT", compute_path(unique_name()), user=BOB.username, json=instance_body(BOB))
    assert denied_write.status_code == 403 and "workspaces/computes/write'" in denied_write.json()["error"]["message"]
    denied_delete = arm_call("DELETE", path + "?underlyingResourceAction=Delete", user=BOB.username)
    assert denied_delete.status_code == 403 and f"over scope '{path}'" in denied_delete.json()["error"]["message"]
    fast_computes.arm_assign_role(WS.name, BOB.username, "Reader")
    assert arm_call("GET", path, user=BOB.username).status_code == 200
    wait_state(arm_call, bobs, "Stopped")
    assert arm_call("POST", path + "/start", user=BOB.username).status_code == 403
    # AzureML Compute Operator (alice): computes yes, but only her own personal instances and not for others
    assert arm_call("POST", path + "/start", user=ALICE.username).status_code == 403
    for_bob = arm_call("PUT", compute_path(unique_name()), user=ALICE.username, json=instance_body(BOB))
    assert for_bob.status_code == 403


# -- throttling -------------------------------------------------------------------------------------
def test_read_and_write_buckets_per_principal(arm_call, fast_computes):
    fast_computes.update_settings(throttle={"read_burst": 3, "read_rate": 1.0})
    path = f"{WS.arm_id}/computes"
    bob = fast_computes.mint_token(BOB.username, ARM_SCOPE)  # minted up front: four quick reads
    try:
        reads = [arm_call("GET", path, token=bob) for _ in range(4)]
        assert [r.status_code for r in reads] == [200, 200, 200, 429]
        assert [r.headers["x-ms-ratelimit-remaining-subscription-reads"] for r in reads] == ["2", "1", "0", "0"]
        throttled = reads[-1]
        assert throttled.json()["error"]["code"] == "TooManyRequests" and throttled.headers["Retry-After"] == "1"
        assert arm_call("GET", path, user=CAROL.username).status_code == 200  # another principal's bucket
        write = arm_call("DELETE", compute_path(unique_name()) + "?underlyingResourceAction=Delete", user=BOB.username)
        assert write.status_code == 204 and "x-ms-ratelimit-remaining-subscription-writes" in write.headers
        started = time.monotonic()
        wait_for(lambda: arm_call("GET", path, token=bob).status_code == 200, 5, 0.1, "a read token back")
        assert time.monotonic() - started < 2.5
    finally:
        fast_computes.arm_reset_throttle()


# -- states, failures, persistence ----------------------------------------------------------------
def test_every_state_can_be_forced(arm_call, fast_computes, compute_name):
    create(arm_call, compute_name, wait=False)
    for state in STATES:
        forced = fast_computes.arm_force_state(compute_name, state)
        assert forced["properties"]["properties"]["state"] == state
        assert state_of(arm_call, compute_name) == state
    assert set(STATES) == {s.value for s in ComputeInstanceState} and "Resizing" in STATES  # the spec's enum


def test_injected_setup_failure_on_start_fails_the_operation(arm_call, fast_computes, compute_name):
    create(arm_call, compute_name)
    path = compute_path(compute_name)
    arm_call("POST", path + "/stop")
    wait_state(arm_call, compute_name, "Stopped")
    fast_computes.arm_fail_next("start", "SetupFailed", compute_name, code="ScriptFailed", message="startup.sh exited 1")
    start = arm_call("POST", path + "/start")
    wait_for(lambda: arm_call("GET", start.headers["Azure-AsyncOperation"]).json()["status"] != "InProgress", 10, 0.05, "op end")
    op = arm_call("GET", start.headers["Azure-AsyncOperation"]).json()
    assert op["status"] == "Failed" and op["error"] == {"code": "ScriptFailed", "message": "startup.sh exited 1"}
    result = arm_call("GET", start.headers["Location"])
    assert result.status_code == 400 and result.json()["error"]["code"] == "ScriptFailed"
    props = arm_call("GET", path).json()["properties"]["properties"]
    assert props["state"] == "SetupFailed" and props["errors"] == [{"error": op["error"]}]
    assert props["lastOperation"]["operationStatus"] == "StartFailed"


def test_idle_shutdown_stops_with_its_trigger(arm_call, fast_computes, compute_name):
    create(arm_call, compute_name)
    fast_computes.arm_idle_shutdown(compute_name)
    wait_state(arm_call, compute_name, "Stopped")
    last = arm_call("GET", compute_path(compute_name)).json()["properties"]["properties"]["lastOperation"]
    assert (last["operationName"], last["operationStatus"], last["operationTrigger"]) == ("Stop", "Succeeded", "IdleShutdown")


def test_no_idle_shutdown_for_an_instance_whose_identity_lacks_contributor(arm_call, fast_computes, compute_name):
    body = instance_body()
    body["identity"] = {"type": "SystemAssigned"}
    assert arm_call("PUT", compute_path(compute_name), json=body).status_code == 201
    wait_state(arm_call, compute_name, "Running")
    with pytest.raises(requests.HTTPError) as refused:
        fast_computes.arm_idle_shutdown(compute_name)
    assert refused.value.response.status_code == 409 and "Contributor" in refused.value.response.text
    assert state_of(arm_call, compute_name) == "Running"  # it keeps running (and billing)
    principal = arm_call("GET", compute_path(compute_name)).json()["identity"]["principalId"]
    fast_computes.arm_assign_role(WS.name, principal, "Contributor")
    fast_computes.arm_idle_shutdown(compute_name)  # with Contributor on the workspace, idle shutdown works
    wait_state(arm_call, compute_name, "Stopped")


def test_computes_and_transitions_survive_a_restart(fresh_emulator):
    control = EmulatorControl(fresh_emulator.endpoints["control"], fresh_emulator.endpoints["ca_bundle"])
    control.update_settings(timings=FAST)
    call = lambda *a, **kw: arm_request(fresh_emulator, control, *a, **kw)  # noqa: E731
    create(call, "persisted")
    control.update_settings(timings={"create": 2.0})
    midway = create(call, "midway", wait=False)
    fresh_emulator.stop()
    again = EmulatorThread(config=default_config(), data_dir=fresh_emulator.state.data_dir)
    again.start()
    try:
        control = EmulatorControl(again.endpoints["control"], again.endpoints["ca_bundle"])
        call = lambda *a, **kw: arm_request(again, control, *a, **kw)  # noqa: E731
        assert state_of(call, "persisted") == "Running"
        assert state_of(call, "midway") == "Creating"
        status_url = midway.headers["Azure-AsyncOperation"].replace(fresh_emulator.endpoints["arm"], again.endpoints["arm"])
        wait_for(lambda: call("GET", status_url).json()["status"] == "Succeeded", 10, 0.1, "the create to finish")
        assert state_of(call, "midway") == "Running"
    finally:
        again.stop()
