"""The emulated Entra ID v2, driven over HTTPS by the real MSAL, oauthenticator and PyJWT."""

from __future__ import annotations

import hashlib
import json
import logging
import ssl

import jwt
import msal
import pytest
import requests
from oauthenticator.azuread import AzureAdOAuthenticator
from tornado.httpclient import HTTPClientError

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from aml_jupyterhub.emulator.entra.model import digest
from support.entra_fixtures import (
    ARM_SCOPE,
    DIRECTORY,
    REDIRECT_URI,
    STORAGE_SCOPE,
    TENANT,
    EntraClient,
    claims,
    entra_session,
    form_post_response,
    pkce_pair,
    redirect_params,
)
from support.signin import login_form, submit_credentials

ALICE = DIRECTORY.user("alice@contoso.example")
GRAPH_APP = "00000003-0000-0000-c000-000000000000"


def entra_error(response: requests.Response, status: int, error: str, code: int) -> dict:
    """Assert an error answer has Entra's exact shape; returns its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error and body["error_codes"] == [code], body
    assert set(body) >= {"error_description", "timestamp", "trace_id", "correlation_id", "error_uri"}
    first, *trace = body["error_description"].split("\r\n")
    assert first.startswith(f"AADSTS{code}: ")
    assert [line.split(":")[0] for line in trace] == ["Trace ID", "Correlation ID", "Timestamp"]
    return body


def msal_app(emulator: EmulatorThread, ca_bundle: str, **kwargs) -> msal.ConfidentialClientApplication:
    kwargs.setdefault("authority", f"{emulator.endpoints['authority']}/{TENANT.id}")
    kwargs.setdefault("instance_discovery", False)
    return msal.ConfidentialClientApplication(
        DEMO_CLIENT_ID, client_credential=DEMO_CLIENT_SECRET, http_client=entra_session(ca_bundle), **kwargs
    )


def rt_for(entra: EntraClient, username: str) -> str:
    """A refresh token by ROPC (fast; sign-in through the page is tested separately)."""
    r = entra.password(username)
    assert r.status_code == 200, r.text
    return r.json()["refresh_token"]


# -- discovery ----------------------------------------------------------------------------


def test_discovery_documents_and_keys(entra, emulator):
    by_id = entra.session.get(f"{entra.base}/v2.0/.well-known/openid-configuration").json()
    by_domain = entra.session.get(f"{entra.authority}/{TENANT.domain}/v2.0/.well-known/openid-configuration").json()
    common = entra.session.get(f"{entra.authority}/common/v2.0/.well-known/openid-configuration").json()
    assert by_id == by_domain
    assert by_id["issuer"] == f"{entra.authority}/{TENANT.id}/v2.0"
    assert by_id["token_endpoint"] == f"{entra.authority}/{TENANT.id}/oauth2/v2.0/token"
    assert common["issuer"] == f"{entra.authority}/{{tenantid}}/v2.0"
    assert common["authorization_endpoint"] == f"{entra.authority}/common/oauth2/v2.0/authorize"
    keys = entra.session.get(by_id["jwks_uri"]).json()["keys"]
    assert [k["kid"] for k in keys] == [k.kid for k in emulator.state.signing_keys]
    assert keys[0]["issuer"] == by_id["issuer"] and keys[0]["x5c"]
    missing = entra.session.get(f"{entra.authority}/no-such-tenant/v2.0/.well-known/openid-configuration")
    entra_error(missing, 400, "invalid_request", 90002)


def test_msal_instance_discovery_and_oidc_authority(emulator, ca_bundle):
    authority = emulator.endpoints["authority"]
    validated = msal_app(emulator, ca_bundle, instance_discovery=f"{authority}/common/discovery/instance")
    result = validated.acquire_token_for_client(["https://management.azure.com/.default"])
    token = claims(result["access_token"])
    # An app-only token: roles, no scp; idtyp only where the resource's registration asks for it (ARM does not here).
    assert token["aud"] == "https://management.azure.com" and "scp" not in token and "idtyp" not in token
    assert token["oid"] == DIRECTORY.apps[0].service_principal_oid
    oidc = msal_app(emulator, ca_bundle, authority=None, oidc_authority=f"{authority}/{TENANT.id}/v2.0")
    assert "access_token" in oidc.acquire_token_for_client(["https://storage.azure.com/.default"])


# -- sign-in: MSAL auth code + PKCE, then one refresh token for any resource -------------


def test_msal_auth_code_pkce_then_refresh_for_each_resource(emulator, ca_bundle, control):
    since = control.mark()
    app = msal_app(emulator, ca_bundle)
    flow = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=REDIRECT_URI, response_mode="form_post")
    assert "code_challenge_method=S256" in flow["auth_uri"]
    page = submit_credentials(requests.Session(), flow["auth_uri"], ALICE.username, "password", ca_bundle)
    action, auth_response = form_post_response(page.text)  # what the browser would post to the app
    assert page.status_code == 200 and action == REDIRECT_URI
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert "access_token" in result, result
    arm = claims(result["access_token"])
    assert arm["aud"] == "https://management.azure.com" and arm["scp"] == "user_impersonation"
    assert (arm["oid"], arm["tid"], arm["upn"]) == (ALICE.oid, TENANT.id, ALICE.username)
    assert sorted(arm["groups"]) == sorted(ALICE.groups)
    assert result["scope"] == ARM_SCOPE

    storage = app.acquire_token_by_refresh_token(result["refresh_token"], [STORAGE_SCOPE])
    assert "access_token" in storage, storage
    token = claims(storage["access_token"])
    assert token["aud"] == "https://storage.azure.com" and token["scp"] == "user_impersonation"
    assert (token["oid"], token["upn"]) == (ALICE.oid, ALICE.username)
    assert storage["refresh_token"] != result["refresh_token"]  # rotated
    principals = {r["principal"] for r in control.requests(since, "authority") if r["route"] == "TokenEndpoint"}
    assert principals == {ALICE.username}

    validated = validate_id_token(emulator, ca_bundle, result["id_token"])
    assert validated["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()  # MSAL sends a hashed nonce
    assert validated["oid"] == ALICE.oid and validated["preferred_username"] == ALICE.username


def validate_id_token(emulator: EmulatorThread, ca_bundle: str, token: str) -> dict:
    """PyJWT against the tenant's JWKS (signature, iss, aud, exp); a tampered token must fail."""
    document = entra_session(ca_bundle).get(
        f"{emulator.endpoints['authority']}/{TENANT.id}/v2.0/.well-known/openid-configuration"
    ).json()
    keys = jwt.PyJWKClient(document["jwks_uri"], ssl_context=ssl.create_default_context(cafile=ca_bundle))
    key = keys.get_signing_key_from_jwt(token).key
    options = {"require": ["exp", "iat", "aud", "iss", "sub"]}
    header, payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(json.dumps({**claims(token), "oid": "someone-else"}).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(f"{header}.{forged}.{signature}", key, ["RS256"], audience=DEMO_CLIENT_ID, options=options)
    return jwt.decode(token, key, ["RS256"], audience=DEMO_CLIENT_ID, issuer=document["issuer"], options=options)


def test_sign_in_page_escapes_and_lists_tenant_users(entra, new_user):
    outsider = new_user(domain="fabrikam.example")
    hostile = '"><script>alert(1)</script>'
    page = entra.session.get(entra.authorize_url(login_hint=hostile))
    assert page.status_code == 200
    assert "<script>alert(1)" not in page.text and "&quot;&gt;&lt;script&gt;" in page.text
    assert all(u.username in page.text for u in DIRECTORY.users)
    assert outsider["username"] not in page.text  # only the tenant's users
    assert page.headers["X-Frame-Options"] == "DENY"
    form = login_form(page.text)
    assert form.password_field == "passwd" and form.inputs["loginfmt"] == hostile


@pytest.mark.parametrize(
    ("username", "password", "code"),
    [(ALICE.username, "wrong", 50126), ("nobody@contoso.example", "password", 50034)],
)
def test_bad_credentials_stay_on_the_page(entra, username, password, code):
    page = entra.session.get(entra.authorize_url())
    action = login_form(page.text).action
    r = entra.session.post(
        entra.authority + action, data={"loginfmt": username, "passwd": password}, allow_redirects=False
    )
    assert r.status_code == 200 and "Location" not in r.headers
    assert f"AADSTS{code}" in r.text and login_form(r.text).inputs["loginfmt"] == username


def test_user_of_another_tenant_cannot_sign_in(entra, new_user):
    outsider = new_user(domain="fabrikam.example")
    page = entra.session.get(entra.authorize_url())
    r = entra.session.post(
        entra.authority + login_form(page.text).action,
        data={"loginfmt": outsider["username"], "passwd": "password"},
        allow_redirects=False,
    )
    assert r.status_code == 200 and "AADSTS50020" in r.text
    assert entra_error(entra.password(outsider["username"]), 400, "invalid_grant", 50020)


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"client_id": "00000000-0000-0000-0000-000000000000"}, 700016),
        ({"redirect_uri": "https://evil.example/cb"}, 50011),
    ],
)
def test_untrusted_authorize_requests_get_an_error_page(entra, params, code):
    r = entra.session.get(entra.authorize_url(**params), allow_redirects=False)
    assert r.status_code == 400 and "Location" not in r.headers
    assert f"AADSTS{code}" in r.text


@pytest.mark.parametrize(
    ("params", "error", "code"),
    [
        ({"scope": "openid https://management.azure.com/not_a_permission"}, "invalid_scope", 70011),
        ({"response_type": "token"}, "unsupported_response_type", 700054),
        ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request", 50149),
        ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request", 501491),
        ({"prompt": "none"}, "login_required", 50058),
    ],
)
def test_authorize_errors_go_back_to_the_app(entra, params, error, code):
    r = entra.session.get(entra.authorize_url(state="s-123", **params), allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith(REDIRECT_URI + "?")
    back = redirect_params(r.headers["Location"])
    assert back["error"] == error and back["state"] == "s-123"
    assert back["error_description"].startswith(f"AADSTS{code}: ")


# -- the token endpoint ---------------------------------------------------------------------


def test_pkce_is_enforced(entra):
    wrong = entra.redeem(entra.sign_in(ALICE.username), code_verifier=pkce_pair()[0])
    entra_error(wrong, 400, "invalid_grant", 501481)
    missing = entra.sign_in(ALICE.username)
    entra_error(entra.token(grant_type="authorization_code", code=missing.code, redirect_uri=REDIRECT_URI), 400,
                "invalid_grant", 50148)
    verifier = pkce_pair()[0]
    plain = entra.sign_in(ALICE.username, code_challenge=verifier, code_challenge_method="plain")
    assert entra.redeem(plain, code_verifier=verifier).status_code == 200


def test_codes_are_single_use_bound_and_short_lived(entra, control):
    sign_in = entra.sign_in(ALICE.username)
    assert entra.redeem(sign_in).status_code == 200
    entra_error(entra.redeem(sign_in), 400, "invalid_grant", 54005)
    elsewhere = entra.sign_in(ALICE.username)
    entra_error(entra.redeem(elsewhere, redirect_uri="http://localhost:9999/other"), 400, "invalid_grant", 50011)
    late = entra.sign_in(ALICE.username)
    control.advance_clock(601)
    entra_error(entra.redeem(late), 400, "invalid_grant", 70008)


def test_code_answer_is_shaped_like_entra(entra):
    sign_in = entra.sign_in(ALICE.username)
    assert sign_in.params["session_state"] and sign_in.params["state"]
    answer = entra.redeem(sign_in, client_info="1")
    body = answer.json()
    assert set(body) == {"token_type", "scope", "expires_in", "ext_expires_in", "access_token", "refresh_token",
                         "id_token", "client_info"}
    assert body["token_type"] == "Bearer" and body["scope"] == ARM_SCOPE and body["expires_in"] == 3600
    assert claims(body["id_token"])["nonce"] == sign_in.nonce
    assert answer.headers["Cache-Control"].startswith("no-store")


def test_client_authentication(entra):
    form = {"grant_type": "password", "username": ALICE.username, "password": "password", "scope": ARM_SCOPE}
    entra_error(entra.token(client_secret="", **form), 401, "invalid_client", 7000218)
    wrong = entra.token(client_secret="not-the-secret", **form)
    entra_error(wrong, 401, "invalid_client", 7000215)
    assert "not-the-secret" not in wrong.text
    entra_error(entra.token(client_id="00000000-0000-0000-0000-000000000000", **form), 400, "unauthorized_client",
                700016)
    assert entra.token(auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET), **form).status_code == 200  # client_secret_basic
    entra_error(entra.token(**{**form, "grant_type": "urn:nope"}), 400, "unsupported_grant_type", 70003)


def test_only_oidc_scopes_give_a_graph_token(entra):
    body = entra.password(ALICE.username, scope="openid profile").json()
    token = claims(body["access_token"])
    assert token["aud"] == GRAPH_APP and token["scp"] == "User.Read"
    assert "refresh_token" not in body and "id_token" in body  # no offline_access, but openid


def test_two_resources_in_one_request_is_invalid_scope(entra, new_user):
    rt = rt_for(entra, new_user()["username"])
    entra_error(entra.refresh(rt, f"{ARM_SCOPE} {STORAGE_SCOPE}"), 400, "invalid_scope", 70011)
    assert entra.refresh(rt, STORAGE_SCOPE).status_code == 200  # the failed request did not use it up


def test_client_credentials_need_dot_default(entra):
    entra_error(entra.token(grant_type="client_credentials", scope=ARM_SCOPE), 400, "invalid_scope", 1002012)
    body = entra.token(grant_type="client_credentials", scope="https://graph.microsoft.com/.default").json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert claims(body["access_token"])["aud"] == GRAPH_APP


def test_revoked_refresh_token_is_invalid_grant(entra, control, new_user):
    user = new_user()
    rt = rt_for(entra, user["username"])
    assert control.entra_revoke(user["username"]) == 1
    body = entra_error(entra.refresh(rt), 400, "invalid_grant", 50173)
    assert rt not in json.dumps(body)


def test_strict_rotation_refuses_superseded_tokens(entra, control, new_user):
    first = rt_for(entra, new_user()["username"])
    second = entra.refresh(first).json()["refresh_token"]
    entra_error(entra.refresh(first), 400, "invalid_grant", 70000)
    control.update_settings(strict_refresh_rotation=False)  # Entra's own, lenient behaviour
    assert entra.refresh(second).status_code == 200
    assert entra.refresh(second).status_code == 200


def test_refresh_token_expires(entra, control, new_user):
    control.update_settings(refresh_token_lifetime=120)
    rt = rt_for(entra, new_user()["username"])
    control.advance_clock(121)
    entra_error(entra.refresh(rt), 400, "invalid_grant", 700082)


def test_missing_consent_is_consent_required(entra, control, new_user):
    user = new_user()
    rt = rt_for(entra, user["username"])
    control.entra_withdraw_consent(user["username"], "storage")
    body = entra_error(entra.refresh(rt, STORAGE_SCOPE), 400, "invalid_grant", 65001)
    assert body["suberror"] == "consent_required"
    rt = entra.refresh(rt, ARM_SCOPE).json()["refresh_token"]  # other resources still work
    control.entra_grant_consent(user["username"], "https://storage.azure.com")
    assert claims(entra.refresh(rt, STORAGE_SCOPE).json()["access_token"])["aud"] == "https://storage.azure.com"


def test_mfa_requirement_is_interaction_required(entra, control, new_user):
    user = new_user()
    rt = rt_for(entra, user["username"])
    control.entra_require_mfa(user["username"])
    body = entra_error(entra.refresh(rt), 400, "interaction_required", 50076)
    assert body["suberror"] == "basic_action"
    entra_error(entra.password(user["username"]), 400, "interaction_required", 50076)  # ROPC cannot do MFA
    fresh = entra.tokens_for(user["username"])  # the interactive sign-in satisfies MFA
    assert entra.refresh(fresh["refresh_token"], STORAGE_SCOPE).status_code == 200


def test_msal_ropc(emulator, ca_bundle, monkeypatch):
    # MSAL's user-realm lookup drops the authority's port (it would call 127.0.0.1:443); this is MSAL's own
    # "host has no user realm endpoint" cache, which it fills itself after a 404.
    monkeypatch.setattr(msal.authority.Authority, "_domains_without_user_realm_discovery", {"127.0.0.1"})
    app = msal_app(emulator, ca_bundle)
    refused = app.acquire_token_by_username_password(ALICE.username, "wrong", scopes=[ARM_SCOPE])
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [50126]
    ok = app.acquire_token_by_username_password(ALICE.username, "password", scopes=[ARM_SCOPE])
    assert claims(ok["access_token"])["upn"] == ALICE.username


def test_throttling_storm_on_the_token_endpoint_then_recovery(entra, control, new_user):
    rt = rt_for(entra, new_user()["username"])
    control.inject(service="authority", path="/oauth2/v2.0/token$", status=429, retry_after=1, count=3)
    storm = [entra.refresh(rt) for _ in range(3)]
    for r in storm:
        entra_error(r, 429, "temporarily_unavailable", 90055)
        assert r.headers["Retry-After"] == "1"
    assert entra.refresh(rt).status_code == 200  # throttled attempts did not use the token up


async def test_oauthenticator_token_helpers(entra, ca_bundle, control, new_user):
    user = new_user()
    rt = rt_for(entra, user["username"])
    for basic_auth in (False, True):
        authenticator = AzureAdOAuthenticator(
            tenant_id=TENANT.id, client_id=DEMO_CLIENT_ID, client_secret=DEMO_CLIENT_SECRET, basic_auth=basic_auth,
            token_url=f"{entra.base}/oauth2/v2.0/token", http_request_kwargs={"ca_certs": ca_bundle},
        )
        info = await authenticator.get_token_info(None, authenticator.build_refresh_token_request_params(rt))
        token = claims(info["access_token"])
        assert token["aud"] == "https://management.azure.com" and token["upn"] == user["username"]
        rt = info["refresh_token"]
    control.entra_revoke(user["username"])
    with pytest.raises(HTTPClientError) as refused:
        await authenticator.get_token_info(None, authenticator.build_refresh_token_request_params(rt))
    assert refused.value.code == 400 and b"AADSTS50173" in refused.value.response.body


def test_no_code_token_or_secret_in_logs(entra, control, caplog):
    caplog.set_level(logging.DEBUG)
    sign_in = entra.sign_in(ALICE.username)
    body = entra.redeem(sign_in).json()
    entra.refresh(body["refresh_token"], STORAGE_SCOPE)
    entra.token(client_secret="wrong-secret-value", grant_type="refresh_token", refresh_token=body["refresh_token"])
    logged = caplog.text + json.dumps(control.requests(service="authority"))
    assert "/oauth2/v2.0/token" in logged  # the emulator's logs were captured
    for secret in (sign_in.code, body["access_token"], body["refresh_token"], DEMO_CLIENT_SECRET, "wrong-secret-value"):
        assert secret[:20] not in logged


def test_refresh_tokens_are_stored_hashed_and_survive_restart(fresh_emulator):
    data_dir = fresh_emulator.state.data_dir
    ca_bundle = fresh_emulator.endpoints["ca_bundle"]
    rt = rt_for(EntraClient(fresh_emulator.endpoints["authority"], ca_bundle), ALICE.username)
    fresh_emulator.stop()
    saved = (data_dir / "state.json").read_text()
    assert rt not in saved and digest(rt) in saved
    restarted = EmulatorThread(config=default_config(), data_dir=data_dir)
    restarted.start()
    try:
        answer = EntraClient(restarted.endpoints["authority"], ca_bundle).refresh(rt, STORAGE_SCOPE)
        assert answer.status_code == 200, answer.text
        assert claims(answer.json()["access_token"])["oid"] == ALICE.oid
    finally:
        restarted.stop()
