"""Delegated Entra sign-in through a real JupyterHub (and proxy) against the emulated Entra ID."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlparse

import jwt
import pytest
import requests

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_SECRET, default_config
from aml_jupyterhub.emulator.core.server import endpoints_line
from support.hub import HubProcess
from support.own_tokens import own_token
from support.signin import hub_sign_in, submit_credentials

DIRECTORY = default_config()
TENANT = DIRECTORY.tenants[0]
ALICE, BOB, CAROL, EVE = (DIRECTORY.user(f"{n}@contoso.example") for n in ("alice", "bob", "carol", "eve"))


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("delegated-hub")
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    hub = HubProcess(workdir, endpoints_file).start()
    yield hub
    hub.stop()


def sign_in(hub: HubProcess, user, ca_bundle: str) -> requests.Session:
    session, callback = hub_sign_in(hub.url, user.username, ca_bundle)
    assert callback.status_code == 302, callback.text[:500]
    return session


def test_sign_in_with_pkce_keeps_delegated_tokens(hub, ca_bundle, control):
    since = control.mark()
    sign_in(hub, ALICE, ca_bundle)
    state = hub.auth_state(ALICE.username)
    assert state["refresh_token"]
    access = claims(state["access_token"])
    assert access["aud"] == "https://management.azure.com"
    assert access["oid"] == ALICE.oid and access["scp"] == "user_impersonation"
    assert state["user"]["oid"] == ALICE.oid  # from the validated id_token
    assert state["expires_at"] > control.now()
    assert "token_response" not in state  # tokens are stored once
    model = hub.api("GET", f"/users/{ALICE.username}").json()
    assert sorted(model["groups"]) == ["data-scientists", "spark-users"]
    assert model["admin"] is False
    token_calls = [r for r in control.requests(since=since, service="authority") if r["route"].lower().startswith("token")]
    assert [r["status"] for r in token_calls] == [200]


def test_admin_group_makes_admin(hub, ca_bundle):
    sign_in(hub, CAROL, ca_bundle)
    assert hub.api("GET", f"/users/{CAROL.username}").json()["admin"] is True


def test_user_outside_allowed_groups_gets_clear_403(hub, ca_bundle):
    _, callback = hub_sign_in(hub.url, EVE.username, ca_bundle)
    assert callback.status_code == 403
    assert "not allowed to use this hub" in callback.text
    assert "data-scientists" in callback.text
    assert hub.api("GET", f"/users/{EVE.username}").status_code == 404


def test_wrong_state_is_rejected(hub, ca_bundle):
    session = requests.Session()
    start = session.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    back = submit_credentials(session, start.headers["Location"], BOB.username, "password", ca_bundle)
    query = parse_qs(urlparse(back.headers["Location"]).query)
    forged = f"{hub.url}/hub/oauth_callback?" + urlencode({"code": query["code"][0], "state": "forged"})
    assert session.get(forged, allow_redirects=False, timeout=30).status_code == 400


def test_injected_code_fails_pkce(hub, ca_bundle, emulator):
    """A code obtained with someone else's PKCE challenge cannot be redeemed by the hub."""
    session = requests.Session()
    start = session.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=30)
    hub_query = parse_qs(urlparse(start.headers["Location"]).query)
    attacker_verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(attacker_verifier.encode()).digest()).rstrip(b"=").decode()
    params = {**{k: v[0] for k, v in hub_query.items()}, "code_challenge": challenge}
    authorize = f"{emulator.endpoints['authority']}/{TENANT.id}/oauth2/v2.0/authorize?{urlencode(params)}"
    back = submit_credentials(session, authorize, BOB.username, "password", ca_bundle)
    callback = session.get(back.headers["Location"], allow_redirects=False, timeout=30)
    assert callback.status_code == 403
    assert "Sign-in was refused" in callback.text
    assert "invalid_grant" in callback.text


def test_broker_mints_delegated_tokens_for_each_resource(hub, ca_bundle):
    token = own_token(hub, sign_in(hub, ALICE, ca_bundle), ALICE.username)
    audiences = {
        "storage": "https://storage.azure.com",
        "fabric": "https://api.fabric.microsoft.com",
        "databricks": "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
        "postgres": "https://ossrdbms-aad.database.windows.net",
    }
    for resource, audience in audiences.items():
        r = hub.api("GET", f"/aml/tokens/{resource}", token=token)
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"access_token", "expires_on", "resource"}
        minted = claims(body["access_token"])
        assert minted["aud"] == audience and minted["oid"] == ALICE.oid
        assert r.headers["Cache-Control"] == "no-store"


def test_broker_gives_each_user_only_their_own_tokens(hub, ca_bundle):
    sign_in(hub, ALICE, ca_bundle)
    bobs = own_token(hub, sign_in(hub, BOB, ca_bundle), BOB.username)
    r = hub.api("GET", "/aml/tokens/storage", token=bobs)
    assert claims(r.json()["access_token"])["oid"] == BOB.oid


def test_broker_refusals(hub, ca_bundle):
    session = sign_in(hub, ALICE, ca_bundle)
    token = own_token(hub, session, ALICE.username)
    assert hub.api("GET", "/aml/tokens/arm", token=token).status_code == 403  # not for user code
    assert hub.api("GET", "/aml/tokens/not-a-resource", token=token).status_code == 403
    narrow = own_token(hub, session, ALICE.username, scopes=["read:users:name!user"])
    assert hub.api("GET", "/aml/tokens/storage", token=narrow).status_code == 403
    xsrf = session.cookies.get("_xsrf", "")
    by_cookie = session.get(
        f"{hub.url}/hub/api/aml/tokens/storage", headers={"X-XSRFToken": xsrf}, params={"_xsrf": xsrf}, timeout=30
    )
    assert by_cookie.status_code == 403
    assert "access_token" not in by_cookie.text


def test_expired_sign_in_token_is_refreshed_before_spawn(hub, ca_bundle, control):
    control.update_settings(access_token_lifetime=120)  # inside the 5-minute margin
    sign_in(hub, BOB, ca_bundle)
    before = hub.auth_state(BOB.username)
    r = hub.api("POST", f"/users/{BOB.username}/server")
    assert r.status_code in (201, 202), r.text
    after = hub.auth_state(BOB.username)
    assert after["refresh_token"] != before["refresh_token"]
    assert after["token_generation"] > before["token_generation"]
    assert after["access_token"] != before["access_token"]
    hub.api("DELETE", f"/users/{BOB.username}/server")


def test_revoked_sign_in_needs_login_again(hub, ca_bundle, control):
    token = own_token(hub, sign_in(hub, CAROL, ca_bundle), CAROL.username)
    control.entra_revoke(CAROL.username)
    r = hub.api("GET", "/aml/tokens/storage", token=token)
    assert r.status_code == 401
    assert "log in to the hub again" in r.json()["message"]


def test_rotation_survives_hub_restart(hub, ca_bundle):
    token = own_token(hub, sign_in(hub, ALICE, ca_bundle), ALICE.username)
    assert hub.api("GET", "/aml/tokens/graph", token=token).status_code == 200  # rotates the refresh token
    rotated = hub.auth_state(ALICE.username)["refresh_token"]
    hub.restart()
    assert hub.auth_state(ALICE.username)["refresh_token"] == rotated
    # the emulator refuses superseded refresh tokens, so this proves the newest one was kept
    assert hub.api("GET", "/aml/tokens/databricks", token=token).status_code == 200


def test_no_token_or_secret_in_hub_logs(hub, ca_bundle):
    token = own_token(hub, sign_in(hub, BOB, ca_bundle), BOB.username)
    minted = hub.api("GET", "/aml/tokens/storage", token=token).json()["access_token"]
    state = hub.auth_state(BOB.username)
    logs = hub.logs()
    assert DEMO_CLIENT_SECRET not in logs
    for secret in (minted, state["access_token"], state["refresh_token"], state["id_token"]):
        assert secret[:24] not in logs


def test_group_overage_is_resolved_through_graph(hub, ca_bundle, control):
    control.update_settings(group_claim_limit=1)  # alice has two groups: the token carries the overage claim
    since = control.mark()
    sign_in(hub, ALICE, ca_bundle)
    assert "_claim_names" in hub.auth_state(ALICE.username)["user"]
    assert sorted(hub.api("GET", f"/users/{ALICE.username}").json()["groups"]) == ["data-scientists", "spark-users"]
    graph_calls = control.requests(since=since, service="graph")
    assert [r["status"] for r in graph_calls] == [200]


def test_revoked_sign_in_sends_the_browser_back_to_login_on_spawn(hub, ca_bundle, control):
    control.update_settings(access_token_lifetime=120)  # due for refresh before any spawn
    session = sign_in(hub, CAROL, ca_bundle)
    control.entra_revoke(CAROL.username)
    xsrf = session.cookies.get("_xsrf", "")
    r = session.post(f"{hub.url}/hub/spawn/{CAROL.username}", data={"_xsrf": xsrf}, allow_redirects=False, timeout=30)
    assert r.status_code == 403  # JupyterHub's "auth has expired ..., login again" page (see auth/compat.py)
    assert "login again" in r.text
    assert hub.api("GET", f"/users/{CAROL.username}").json()["servers"] == {}


def test_hub_refuses_to_start_without_a_crypt_key(emulator, tmp_path):
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    hub = HubProcess(tmp_path / "hub", endpoints_file, env={"JUPYTERHUB_CRYPT_KEY": ""})
    with pytest.raises(RuntimeError, match="exited"):
        hub.start(timeout=60)
    assert "JUPYTERHUB_CRYPT_KEY is not set" in hub.logs()


def test_concurrent_broker_requests_make_one_entra_call(hub, ca_bundle, control):
    from concurrent.futures import ThreadPoolExecutor

    token = own_token(hub, sign_in(hub, BOB, ca_bundle), BOB.username)
    since = control.mark()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: hub.api("GET", "/aml/tokens/fabric", token=token), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({a.json()["access_token"] for a in answers}) == 1  # one mint, shared
    token_calls = [r for r in control.requests(since=since, service="authority") if r["method"] == "POST"]
    assert len(token_calls) == 1


def test_users_code_calls_azure_storage_through_the_broker(hub, ca_bundle, emulator, control):
    """What a notebook does: an Azure SDK client with HubTokenCredential, no secret on disk."""
    from azure.storage.fileshare import ShareServiceClient

    from aml_jupyterhub.tokens import HubTokenCredential, TokenBrokerClient, TokenBrokerError

    session = sign_in(hub, ALICE, ca_bundle)
    account = DIRECTORY.storage_accounts[0].name
    share = "alice-notebook-share"
    admin = ShareServiceClient(
        f"{emulator.endpoints['files']}/{account}", credential=DIRECTORY.storage_accounts[0].key,
        connection_verify=ca_bundle, retry_total=0,
    )
    admin.create_share(share)
    control.files_assign_role(account, ALICE.oid, "Storage File Data Privileged Contributor", share=share)
    client = TokenBrokerClient(f"{hub.url}/hub/api", own_token(hub, session, ALICE.username))
    files = ShareServiceClient(
        f"{emulator.endpoints['files']}/{account}", credential=HubTokenCredential("storage", client),
        token_intent="backup", connection_verify=ca_bundle, retry_total=0,
    )
    files.get_share_client(share).get_file_client("hello.txt").upload_file(b"written as alice")
    assert admin.get_share_client(share).get_file_client("hello.txt").download_file().readall() == b"written as alice"
    with pytest.raises(TokenBrokerError) as refused:
        client.get_token("arm")
    assert refused.value.status == 403
