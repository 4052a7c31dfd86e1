"""The emulated Microsoft Graph subset: the user, group membership (paged), the overage round trip."""

from __future__ import annotations

import uuid

import pytest
import requests

from support.entra_fixtures import (
    DIRECTORY,
    GRAPH_GROUPS_SCOPE,
    claims,
    entra_session,
)

ALICE = DIRECTORY.user("alice@contoso.example")
BOB = DIRECTORY.user("bob@contoso.example")
USER_READ = "https://graph.microsoft.com/User.Read"


class Graph:
    """Graph over HTTPS with a bearer token."""

    def __init__(self, url: str, ca_bundle: str) -> None:
        self.url = url
        self.session = entra_session(ca_bundle)

    def call(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        target = path if path.startswith("https://") else self.url + path
        headers.update(kwargs.pop("headers", {}))
        return self.session.request(method, target, headers=headers, timeout=30, **kwargs)

    def member_objects(self, token: str, who: str = "me", security_only: bool = False) -> list[str]:
        r = self.call("POST", f"/v1.0/{who}/getMemberObjects", token, json={"securityEnabledOnly": security_only})
        assert r.status_code == 200, r.text
        return r.json()["value"]


@pytest.fixture
def graph(emulator, ca_bundle) -> Graph:
    return Graph(emulator.endpoints["graph"], ca_bundle)


def graph_error(response: requests.Response, status: int, code: str) -> dict:
    """Assert Graph's error dialect; returns the ``error`` object."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    return error


def user_with_groups(control, new_user, count: int, distribution: int = 0) -> tuple[dict, list[str]]:
    """A new user in ``count`` new security groups and ``distribution`` mail-only groups."""
    tag = uuid.uuid4().hex[:8]
    ids = [control.entra_add_group(f"sec-{tag}-{i}") for i in range(count)]
    ids += [control.entra_add_group(f"mail-{tag}-{i}", security_enabled=False) for i in range(distribution)]
    return new_user(groups=ids), ids


def test_me_needs_only_user_read(graph, control):
    since = control.mark()
    token = control.mint_token(ALICE.username, USER_READ)
    me = graph.call("GET", "/v1.0/me", token)
    assert me.status_code == 200
    body = me.json()
    assert (body["id"], body["userPrincipalName"], body["displayName"]) == (ALICE.oid, ALICE.username, "Alice Archer")
    assert body["@odata.context"].endswith("/v1.0/$metadata#users/$entity")
    assert graph.call("GET", f"/v1.0/users/{ALICE.username}", token).status_code == 200  # themself
    graph_error(graph.call("GET", f"/v1.0/users/{BOB.oid}", token), 403, "Authorization_RequestDenied")
    graph_error(graph.call("GET", "/v1.0/me/memberOf", token), 403, "Authorization_RequestDenied")
    principals = {r["principal"] for r in control.requests(since, "graph")}
    assert principals == {ALICE.username}


def test_member_of_is_paged(graph, control, new_user):
    user, ids = user_with_groups(control, new_user, 5)
    token = control.mint_token(user["username"], GRAPH_GROUPS_SCOPE)
    page = graph.call("GET", "/v1.0/me/memberOf?$top=2", token).json()
    seen, sizes = [], []
    while True:
        sizes.append(len(page["value"]))
        seen += [g["id"] for g in page["value"]]
        assert {g["@odata.type"] for g in page["value"]} == {"#microsoft.graph.group"}
        if "@odata.nextLink" not in page:
            break
        page = graph.call("GET", page["@odata.nextLink"], token).json()
    assert sizes == [2, 2, 1] and seen == ids
    graph_error(graph.call("GET", "/v1.0/me/memberOf?$top=1000", token), 400, "Request_UnsupportedQuery")
    graph_error(graph.call("GET", "/v1.0/me/memberOf?$skiptoken=garbage", token), 400, "Request_BadRequest")


def test_get_member_objects_filters_security_groups(graph, control, new_user):
    user, ids = user_with_groups(control, new_user, 2, distribution=1)
    token = control.mint_token(user["username"], GRAPH_GROUPS_SCOPE)
    assert graph.member_objects(token) == ids
    assert graph.member_objects(token, security_only=True) == ids[:2]
    assert graph.member_objects(token, who=f"users/{user['oid']}") == ids
    bad = graph.call("POST", "/v1.0/me/getMemberObjects", token, json={})
    graph_error(bad, 400, "Request_BadRequest")


@pytest.mark.parametrize("case", ["missing", "wrong_audience", "expired", "garbage"])
def test_bad_tokens_are_401(graph, control, case):
    tokens = {
        "missing": lambda: None,
        "wrong_audience": lambda: control.mint_token(ALICE.username, "https://management.azure.com/user_impersonation"),
        "expired": lambda: control.mint_token(ALICE.username, USER_READ, lifetime=60),
        "garbage": lambda: "not-a-jwt",
    }
    token = tokens[case]()
    if case == "expired":
        control.advance_clock(120)
    r = graph.call("GET", "/v1.0/me", token, headers={"client-request-id": "my-id"})
    error = graph_error(r, 401, "InvalidAuthenticationToken")
    assert error["innerError"]["client-request-id"] == "my-id"
    assert r.headers["WWW-Authenticate"].startswith("Bearer ")
    expected = {"missing": "empty", "wrong_audience": "Invalid audience", "expired": "expired", "garbage": "failure"}
    assert expected[case] in error["message"]


def test_app_only_tokens(graph, entra):
    token = entra.token(grant_type="client_credentials", scope="https://graph.microsoft.com/.default").json()
    app_token = token["access_token"]
    graph_error(graph.call("GET", "/v1.0/me", app_token), 400, "BadRequest")
    body = {"securityEnabledOnly": False}
    denied = graph.call("POST", f"/v1.0/users/{ALICE.oid}/getMemberObjects", app_token, json=body)
    graph_error(denied, 403, "Authorization_RequestDenied")  # the demo app holds no Graph application roles


def test_group_overage_is_resolved_through_graph(graph, entra, control, new_user):
    control.update_settings(group_claim_limit=2)
    user, ids = user_with_groups(control, new_user, 3)
    answer = entra.tokens_for(user["username"])
    id_claims, access = claims(answer["id_token"]), claims(answer["access_token"])
    for token in (id_claims, access):
        assert "groups" not in token and token["_claim_names"] == {"groups": "src1"}
    endpoint = id_claims["_claim_sources"]["src1"]["endpoint"]
    assert endpoint == f"{graph.url}/v1.0/users/{user['oid']}/getMemberObjects"
    graph_token = entra.refresh(answer["refresh_token"], GRAPH_GROUPS_SCOPE).json()["access_token"]
    r = graph.call("POST", endpoint, graph_token, json={"securityEnabledOnly": True})
    assert r.status_code == 200 and r.json()["value"] == ids
    member_of = graph.call("GET", "/v1.0/me/memberOf", graph_token).json()["value"]
    assert [g["id"] for g in member_of] == ids


def test_userinfo_matches_the_id_token(graph, entra):
    answer = entra.password(ALICE.username, scope="openid profile").json()  # a Graph User.Read token
    info = graph.call("GET", "/oidc/userinfo", answer["access_token"]).json()
    assert info["sub"] == claims(answer["id_token"])["sub"]
    assert (info["name"], info["email"]) == (ALICE.display_name, ALICE.mail)
