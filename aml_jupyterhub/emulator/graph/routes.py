"""A Microsoft Graph subset on the ``graph`` port: the signed-in user and their groups.

- ``GET /v1.0/me``, ``GET /v1.0/users/{id|upn}``
- ``GET /v1.0/me/memberOf``, ``GET /v1.0/users/{id}/memberOf``: paged with
  ``$top`` (1-999, default 100) and ``@odata.nextLink`` (``$skiptoken``)
- ``POST /v1.0/me/getMemberObjects``, ``POST /v1.0/users/{id}/getMemberObjects``:
  ``{"securityEnabledOnly": bool}`` -> ``{"value": [ids]}`` (where the groups
  overage claim points)
- ``GET /oidc/userinfo`` (the discovery document's ``userinfo_endpoint``)

Bearer tokens are validated like Graph does (audience, signature, lifetime):
401 ``InvalidAuthenticationToken`` otherwise. Reading a user needs
``User.Read`` (self) or ``User.ReadBasic.All``/``User.Read.All``/
``Directory.Read.All``; group membership needs ``GroupMember.Read.All`` or
``Directory.Read.All``, delegated (``scp``) or application (``roles``);
otherwise 403 ``Authorization_RequestDenied``. Errors use Graph's dialect with
``innerError`` (date, request-id, client-request-id).

Deviations: membership is flat (no nested groups, no directory roles or
administrative units); ``$select``/``$filter``/``$count`` are ignored; only the
users of the caller's tenant are visible.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Any

from ..core.config import Group, User
from ..core.handlers import EmulatorHandler, ServiceError
from ..core.keys import TokenError
from ..core.state import EmulatorState
from ..core.tokens import Caller, pairwise_sub, require_bearer

MAX_TOP = 999
DEFAULT_TOP = 100
READ_USERS = frozenset({"User.ReadBasic.All", "User.Read.All", "Directory.Read.All"})
READ_MEMBERSHIP = frozenset({"GroupMember.Read.All", "Directory.Read.All"})
GRAPH_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "Request_ResourceNotFound",
    405: "Request_BadRequest",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def iso_utc(epoch: float) -> str:
    """Graph's ``innerError.date`` format."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch))


def user_json(user: User) -> dict[str, Any]:
    """A user as Graph's default ``user`` projection shows it."""
    given, _, surname = user.display_name.partition(" ")
    return {
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": given or None,
        "jobTitle": None,
        "mail": user.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "surname": surname or None,
        "userPrincipalName": user.username,
        "id": user.oid,
    }


def group_json(group: Group) -> dict[str, Any]:
    """A group as a ``directoryObject`` in ``memberOf``."""
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": group.id,
        "deletedDateTime": None,
        "description": None,
        "displayName": group.display_name,
        "groupTypes": [],
        "mail": None,
        "mailEnabled": not group.security_enabled,
        "mailNickname": group.display_name.replace(" ", ""),
        "securityEnabled": group.security_enabled,
        "visibility": None,
    }


def token_problem(error: TokenError) -> str:
    """Graph's wording for a bearer token it refuses."""
    if str(error) == "missing":
        return "Access token is empty."
    if error.expired:
        return "Lifetime validation failed, the token is expired."
    if "audience" in str(error):
        return "Access token validation failure. Invalid audience."
    return "Access token validation failure."


def encode_skiptoken(offset: int) -> str:
    """An opaque paging token for the next page."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> int:
    """The offset a paging token stands for (400 if it is not one of ours)."""
    try:
        offset = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ServiceError(400, "Request_BadRequest", "Invalid paging token (skiptoken).") from None
    if not isinstance(offset, int) or offset < 0:
        raise ServiceError(400, "Request_BadRequest", "Invalid paging token (skiptoken).")
    return offset


class GraphHandler(EmulatorHandler):
    """Graph's dialect: ``request-id`` headers and ``{"error": {code, message, innerError}}``."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("request-id", self.request_id)
        self.set_header("client-request-id", self.client_request_id)

    @property
    def client_request_id(self) -> str:
        """The caller's ``client-request-id``, else this request's id (Graph echoes one either way)."""
        return self.request.headers.get("client-request-id") or self.request_id

    @property
    def graph_url(self) -> str:
        return self.state.urls["graph"]

    def default_error_code(self, status: int) -> str:
        return GRAPH_ERROR_CODES.get(status, "generalException")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        inner = {
            "date": iso_utc(self.state.now()),
            "request-id": self.request_id,
            "client-request-id": self.client_request_id,
        }
        body = {"error": {"code": error.code, "message": error.message, "innerError": inner}}
        return "application/json; charset=utf-8", json.dumps(body).encode()

    # -- who is calling ----------------------------------------------------------------
    def authenticate(self) -> Caller:
        """The validated caller (401 otherwise); also names them in the request log."""
        try:
            caller = require_bearer(self.state, self.request.headers.get("Authorization"), "graph")
        except TokenError as e:
            challenge = (
                f'Bearer realm="", authorization_uri="{self.state.urls.get("authority", "")}/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'
            )
            headers = {"WWW-Authenticate": challenge}
            raise ServiceError(401, "InvalidAuthenticationToken", token_problem(e), headers) from None
        self.principal = caller.name
        return caller

    def require(self, caller: Caller, permissions: frozenset[str]) -> None:
        """403 unless the token holds one of ``permissions`` (delegated or application)."""
        if not (caller.scopes | caller.roles) & permissions:
            raise ServiceError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    def target_user(self, caller: Caller, who: str) -> User:
        """``me`` (delegated callers only) or ``users/{id}``: a user of the caller's tenant by object id or UPN."""
        who = who.removeprefix("users/")
        if who == "me":
            if caller.is_app:
                raise ServiceError(400, "BadRequest", "/me request is only valid with delegated authentication flow.")
            who = caller.oid
        user = self.state.config.user(who)
        if user is None or user.tenant_id != caller.tenant_id:
            raise ServiceError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{who}' does not exist or one of its queried reference-property objects are not present.",
            )
        return user

    def readable_user(self, who: str, permissions: frozenset[str], own: frozenset[str] = frozenset()) -> User:
        """The user ``who`` names, once the caller holds one of ``permissions`` (or of ``own``, for themselves)."""
        caller = self.authenticate()
        user = self.target_user(caller, who)
        self.require(caller, permissions | own if user.oid == caller.oid else permissions)
        return user

    def member_groups(self, user: User) -> list[Group]:
        """The user's groups that exist in the directory, in the user's order."""
        groups = (self.state.config.group(g) for g in user.groups)
        return [g for g in groups if g is not None]


class UserResource(GraphHandler):
    """``GET /v1.0/me`` and ``GET /v1.0/users/{id}``."""

    def get(self, who: str) -> None:
        user = self.readable_user(who, READ_USERS, own=frozenset({"User.Read"}))
        context = f"{self.graph_url}/v1.0/$metadata#users/$entity"
        self.send_json(200, {"@odata.context": context, **user_json(user)})


class MemberOf(GraphHandler):
    """``GET /v1.0/{me|users/{id}}/memberOf``: one page of groups, with ``@odata.nextLink`` if more."""

    def _top(self) -> int:
        """The page size ``$top`` asks for."""
        raw = self.get_query_argument("$top", str(DEFAULT_TOP))
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
            raise ServiceError(
                400,
                "Request_UnsupportedQuery",
                f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_TOP} inclusive.",
            )
        return int(raw)

    def get(self, who: str) -> None:
        user = self.readable_user(who, READ_MEMBERSHIP)
        top = self._top()
        skiptoken = self.get_query_argument("$skiptoken", None)
        offset = decode_skiptoken(skiptoken) if skiptoken else 0
        groups = self.member_groups(user)
        body: dict[str, Any] = {
            "@odata.context": f"{self.graph_url}/v1.0/$metadata#directoryObjects",
            "value": [group_json(g) for g in groups[offset : offset + top]],
        }
        if offset + top < len(groups):
            body["@odata.nextLink"] = (
                f"{self.graph_url}{self.request.path}?$top={top}&$skiptoken={encode_skiptoken(offset + top)}"
            )
        self.send_json(200, body)


class GetMemberObjects(GraphHandler):
    """``POST /v1.0/{me|users/{id}}/getMemberObjects`` with ``{"securityEnabledOnly": bool}``."""

    def post(self, who: str) -> None:
        user = self.readable_user(who, READ_MEMBERSHIP)
        security_only = self.json_body().get("securityEnabledOnly")
        if not isinstance(security_only, bool):
            raise ServiceError(
                400, "Request_BadRequest", "The value of the parameter 'securityEnabledOnly' must be a boolean."
            )
        ids = [g.id for g in self.member_groups(user) if g.security_enabled or not security_only]
        self.send_json(200, {"@odata.context": f"{self.graph_url}/v1.0/$metadata#Collection(Edm.String)", "value": ids})


class UserInfo(GraphHandler):
    """``GET /oidc/userinfo``: the OpenID Connect claims of the signed-in user."""

    def get(self) -> None:
        caller = self.authenticate()
        user = self.target_user(caller, "me")
        given, _, family = user.display_name.partition(" ")
        self.send_json(200, {
            "sub": pairwise_sub(user.oid, caller.claims.get("appid", "")),
            "name": user.display_name,
            "family_name": family,
            "given_name": given,
            "email": user.mail,
        })


#: The user a path names: ``me`` or ``users/{id|upn}`` (see :meth:`GraphHandler.target_user`).
_WHO = r"/v1\.0/(me|users/[^/]+)"


def routes(state: EmulatorState) -> list:
    """The graph port's routes."""
    kw = {"state": state}
    return [
        (_WHO, UserResource, kw),
        (_WHO + r"/memberOf", MemberOf, kw),
        (_WHO + r"/getMemberObjects", GetMemberObjects, kw),
        (r"/oidc/userinfo", UserInfo, kw),
    ]
