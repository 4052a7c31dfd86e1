"""Issue 15 items 1 and 2: the instance exchange trusts only the instance the hub created, and what
it gave an instance dies with it. Each attack runs against a real hub and proxy, the emulated Azure
and emulated instances that run their startup script (whose agent makes the real exchange).

Attack tokens are minted with the emulated Entra ID's own signing keys (what Entra would issue to that
identity), so every refusal below comes from the hub's checks, not from a bad signature.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, stable_id
from aml_jupyterhub.emulator.core.tokens import managed_identity_token
from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, signed_in, spawn, stop
from support.hub import wait_for

HUB_ID = "security-exchange"
API_VERSION = "2023-08-01-preview"
AUDIENCE = f"api://{DEMO_CLIENT_ID}"


@pytest.fixture(scope="module")
def hub(emulator, instances, tmp_path_factory):
    extra = """
c.AMLSpawner.stop_wait_seconds = 30
c.AMLSpawner.reconcile_interval_seconds = 0
c.JupyterHub.named_server_limit_per_user = 0
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("exchange-hub"), HUB_ID, extra)


def identity_token(emulator, principal_id: str, tenant_id: str, resource_id: str) -> str:
    """A managed-identity token for the hub's app, as Entra ID issues it to ``principal_id``."""
    state = emulator.state
    client_id = stable_id("managed-identity-client", principal_id)  # as the emulated instance's identity has
    return emulator.call(lambda: managed_identity_token(state, principal_id, client_id, tenant_id, resource_id, AUDIENCE)[0])


def identity_token_as_azure_sends_it(emulator, principal_id: str, tenant_id: str, resource_id: str) -> str:
    """The same, with only claims Azure always sends: no optional ``idtyp``, and ``appid`` the identity's
    client id (not its object id)."""
    state = emulator.state

    def mint() -> str:
        now = int(state.now())
        return state.sign({
            "aud": AUDIENCE, "iss": f"https://sts.windows.net/{tenant_id}/", "iat": now, "nbf": now, "exp": now + 600,
            "tid": tenant_id, "ver": "1.0", "appid": str(uuid.uuid4()), "appidacr": "2", "oid": principal_id,
            "sub": principal_id, "xms_mirid": resource_id, "uti": uuid.uuid4().hex,
        })  # fmt: skip

    return emulator.call(mint)


def exchange(hub, token: str) -> requests.Response:
    return requests.post(f"{hub.url}/hub/api/aml/instance-token", json={"identity_token": token}, timeout=60)


def compute_of(control, username: str, server: str = "") -> dict:
    [compute] = instances_of(control, HUB_ID, username, server)
    return compute


def instance_hub_token(instances, compute: dict) -> str:
    """The hub token the instance's agent got at startup (the real exchange)."""
    home = instances.instances[compute["id"].lower()].home
    return json.loads((home / ".aml-jupyterhub" / "hub-token.json").read_text())["token"]


def token_works(hub, token: str) -> bool:
    return hub.api("GET", "/user", token=token).status_code == 200


def refused(hub, response: requests.Response, compute: str, reason: str) -> None:
    assert response.status_code == 403, response.text
    assert reason in response.json()["message"]
    line = next(line for line in hub.logs().splitlines() if f"Instance token refused for compute {compute}" in line and reason in line)
    assert "eyJ" not in line  # names the reason, never a token


def server_state(hub, username: str, server: str = "") -> dict:
    return hub.api("GET", f"/users/{username}").json()["servers"][server]["state"]


def arm(emulator, control, user, method: str, compute: dict, body: dict | None = None) -> requests.Response:
    token = control.mint_token(user.username, "https://management.azure.com/.default")
    params = {"api-version": API_VERSION, **({"underlyingResourceAction": "Delete"} if method == "DELETE" else {})}
    return requests.request(
        method, f"{emulator.endpoints['arm']}{compute['id']}", params=params, json=body,
        headers={"Authorization": f"Bearer {token}"}, verify=emulator.endpoints["ca_bundle"], timeout=60,
    )  # fmt: skip


def test_the_instance_the_hub_created_is_recorded_and_trusted(hub, fast, emulator, instances, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username)
    compute = compute_of(fast, ALICE.username)
    record = server_state(hub, ALICE.username)["instances"][compute["name"]]
    assert record == {
        "principal_id": compute["identity"]["principalId"],
        "tenant_id": compute["identity"]["tenantId"],
        "created_on": compute["properties"]["createdOn"],
    }
    assert token_works(hub, instance_hub_token(instances, compute))  # the agent's own exchange at startup
    ok = exchange(hub, identity_token(emulator, record["principal_id"], record["tenant_id"], compute["id"].lower()))
    assert ok.status_code == 200 and ok.json()["user"] == ALICE.username  # xms_mirid compared case-insensitively
    plain = exchange(hub, identity_token_as_azure_sends_it(emulator, record["principal_id"], record["tenant_id"], compute["id"]))
    assert plain.status_code == 200, plain.text  # idtyp is optional; appid is not the principal id


def test_another_instances_identity_is_refused(hub, fast, emulator, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username)
    alices, bobs = compute_of(fast, ALICE.username), compute_of(fast, BOB.username)
    token = identity_token(emulator, bobs["identity"]["principalId"], bobs["identity"]["tenantId"], alices["id"])
    refused(hub, exchange(hub, token), alices["name"], "another identity than the one this hub recorded")
    stop(hub, BOB.username)


def test_another_tenants_token_is_refused(hub, fast, emulator):
    alices = compute_of(fast, ALICE.username)
    token = identity_token(emulator, alices["identity"]["principalId"], str(uuid.uuid4()), alices["id"])
    refused(hub, exchange(hub, token), alices["name"], "not this hub's")


def test_a_recreated_same_name_instance_is_refused_and_ends_the_server(hub, fast, emulator, instances, ca_bundle):
    original = compute_of(fast, ALICE.username)
    recorded = original["identity"]["principalId"]
    given = instance_hub_token(instances, original)
    old_identity = identity_token(emulator, recorded, original["identity"]["tenantId"], original["id"])  # minted before the swap
    # carol, a workspace Contributor (no hub rights needed), deletes alice's instance and creates her own, same name.
    assert arm(emulator, fast, CAROL, "DELETE", original).status_code in (200, 202, 204)
    fast.arm_settle(original["name"])
    wait_for(lambda: fast.arm_compute(original["name"]) is None, 30, 0.1, "the delete")
    body = {
        "location": original["location"],
        "identity": {"type": "SystemAssigned"},
        "tags": original["tags"],
        "properties": {"computeType": "ComputeInstance", "properties": {
            "vmSize": original["properties"]["properties"]["vmSize"],
            "personalComputeInstanceSettings": {"assignedUser": {"objectId": ALICE.oid, "tenantId": ALICE.tenant_id}},
        }},
    }  # fmt: skip
    assert arm(emulator, fast, CAROL, "PUT", original, body).status_code in (200, 201), "carol's create"
    fast.arm_settle(original["name"])
    impostor = fast.arm_compute(original["name"])
    assert impostor["identity"]["principalId"] != recorded

    token = identity_token(emulator, impostor["identity"]["principalId"], impostor["identity"]["tenantId"], impostor["id"])
    response = exchange(hub, token)
    assert response.status_code == 403, response.text
    # The hub notices the swap within a poll, ends alice's server and revokes what her instance was given.
    wait_for(lambda: "" not in hub.api("GET", f"/users/{ALICE.username}").json()["servers"], 30, 0.2, "the server to end")
    assert not token_works(hub, given)
    refused(hub, exchange(hub, old_identity), original["name"], "no running server of this hub owns that compute instance")
    assert "re-created outside this hub" in hub.logs()

    # Her next start refuses the impostor; 'recreate' replaces it with an instance of her own.
    r = hub.api("POST", f"/users/{ALICE.username}/server", json={"user_options": {}})
    if r.status_code in (201, 202):
        wait_for(lambda: "" not in hub.api("GET", f"/users/{ALICE.username}").json()["servers"], 60, 0.2, "the refused spawn to end")
    assert "is not the one this hub created" in hub.logs()
    spawn(hub, ALICE.username, {"recreate": True})
    mine = compute_of(fast, ALICE.username)
    assert mine["identity"]["principalId"] not in (recorded, impostor["identity"]["principalId"])


def test_a_stopped_servers_instance_is_refused_and_its_tokens_die(hub, fast, emulator, instances):
    compute = compute_of(fast, ALICE.username)
    record = server_state(hub, ALICE.username)["instances"][compute["name"]]
    given = instance_hub_token(instances, compute)
    fresh = exchange(hub, identity_token(emulator, record["principal_id"], record["tenant_id"], compute["id"]))
    assert fresh.status_code == 200 and token_works(hub, given) and token_works(hub, fresh.json()["token"])
    stop(hub, ALICE.username)
    assert not token_works(hub, given) and not token_works(hub, fresh.json()["token"])  # at once, not in an hour
    token = identity_token(emulator, record["principal_id"], record["tenant_id"], compute["id"])
    refused(hub, exchange(hub, token), compute["name"], "no running server of this hub owns that compute instance")


def test_an_instance_deleted_in_azure_ends_its_server_and_tokens(hub, fast, emulator, instances, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username, server="gone")
    compute = compute_of(fast, BOB.username, "gone")
    given = instance_hub_token(instances, compute)
    assert token_works(hub, given)
    assert arm(emulator, fast, BOB, "DELETE", compute).status_code in (200, 202, 204)  # e.g. from the portal
    fast.arm_settle(compute["name"])
    wait_for(lambda: "gone" not in hub.api("GET", f"/users/{BOB.username}").json()["servers"], 30, 0.2, "the server to end")
    assert not token_works(hub, given)
