"""Entra's token endpoint and its grants: authorization code, refresh token, password, client credentials."""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote

from ..core.config import App, User
from ..core.tokens import (
    RESOURCES_BY_KEY,
    Resource,
    ScopeRequest,
    access_token,
    app_token,
    id_token,
    parse_scopes,
)
from .directory import (
    TenantRef,
    check_credentials,
    client_info,
    find_app,
    issuer,
    resolve_tenant,
)
from .errors import (
    BAD_SECRET,
    CLIENT_CREDENTIALS_SCOPE,
    CONSENT_REQUIRED,
    MFA_REQUIRED,
    MISSING_PARAMETER,
    MISSING_SECRET,
    PUBLIC_CLIENT_SECRET,
    UNKNOWN_USER,
    UNSUPPORTED_GRANT,
    EntraHandler,
)
from .model import Consents, RefreshTokens, redeem_code


def granted(request: ScopeRequest) -> tuple[Resource, tuple[str, ...]]:
    """The resource a token is for: with only OIDC scopes Entra returns a Graph ``User.Read`` token."""
    if request.resource is None:
        return RESOURCES_BY_KEY["graph"], ("User.Read",)
    return request.resource, request.permissions


def scope_string(resource: Resource, permissions: tuple[str, ...]) -> str:
    """The token answer's ``scope``: full scope strings of the one resource."""
    return " ".join(f"{resource.app_id_uri}/{p}" for p in permissions)


def bearer_answer(token: str, expires_in: int, scope: str | None = None) -> dict[str, Any]:
    """A token answer's access-token fields (``scope`` for delegated tokens)."""
    answer: dict[str, Any] = {"token_type": "Bearer"}
    if scope is not None:
        answer["scope"] = scope
    answer.update(expires_in=expires_in, ext_expires_in=expires_in, access_token=token)
    return answer


GrantHandler = Callable[["TokenEndpoint", TenantRef, App], dict[str, Any]]


@dataclass
class TokenGrant:
    """Who a token answer is for, once a grant checked out."""

    user: User
    app: App
    request: ScopeRequest
    mfa: bool
    offline: bool
    refresh_scope: str  # what the new refresh token redeems when asked without a scope
    nonce: str | None = None


class TokenEndpoint(EntraHandler):
    """``POST /{tenant}/oauth2/v2.0/token``."""

    def post(self, segment: str) -> None:
        ref = resolve_tenant(self.state, segment)
        grant_type = self._required("grant_type")
        grant = GRANTS.get(grant_type)
        if grant is None:
            raise UNSUPPORTED_GRANT(value=grant_type)
        app = self._client(ref)
        self.send_json(200, grant(self, ref, app))

    # -- request parts -------------------------------------------------------------------
    def _required(self, name: str) -> str:
        """A form parameter that must be present (AADSTS900144)."""
        value = self.get_body_argument(name, None)
        if not value:
            raise MISSING_PARAMETER(name=name)
        return value

    def _client_secret_pair(self) -> tuple[str | None, str | None]:
        """client_secret_basic (form-encoded id:secret in Basic auth) or client_secret_post."""
        auth = self.request.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(auth[6:].strip()).decode()
            except ValueError:
                raise MISSING_SECRET() from None
            client_id, _, secret = decoded.partition(":")
            return unquote(client_id), unquote(secret)
        return self.get_body_argument("client_id", None), self.get_body_argument("client_secret", None)

    def _client(self, ref: TenantRef) -> App:
        """Authenticate the client: confidential apps must present their secret, public ones none."""
        client_id, secret = self._client_secret_pair()
        app = find_app(self.state, ref, client_id)
        if app.client_secret is None:
            if secret:
                raise PUBLIC_CLIENT_SECRET()
            return app
        if not secret:
            raise MISSING_SECRET()
        if not hmac.compare_digest(secret.encode(), app.client_secret.encode()):
            raise BAD_SECRET(client_id=app.client_id)
        return app

    def _user(self, ref: TenantRef, oid: str) -> User:
        """The directory user a grant names (they may have been removed since)."""
        user = self.state.config.user(oid)
        if user is None:
            raise UNKNOWN_USER(upn=oid, tenant=ref.segment)
        return user

    # -- grants --------------------------------------------------------------------------
    def authorization_code(self, ref: TenantRef, app: App) -> dict[str, Any]:
        """Redeem a code (once, with its redirect URI and PKCE verifier)."""
        code = redeem_code(
            self.state, self._required("code"), app, self._required("redirect_uri"),
            self.get_body_argument("code_verifier", None),
        )
        scope = self.get_body_argument("scope", None) or code.scope
        request = parse_scopes(scope)
        offline = code.offline or "offline_access" in request.oidc
        return self.issue(TokenGrant(self._user(ref, code.oid), app, request, True, offline, scope, code.nonce))

    def refresh_token(self, ref: TenantRef, app: App) -> dict[str, Any]:
        """Any consented resource, one per request; the redeemed token rotates."""
        token = self._required("refresh_token")
        store = RefreshTokens(self.state)
        record = store.check(token, app)
        request = parse_scopes(self.get_body_argument("scope", None) or record["scope"])
        user = self._user(ref, record["oid"])
        answer = self.issue(TokenGrant(user, app, request, record["mfa"], True, record["scope"]))
        store.retire(token)
        return answer

    def password(self, ref: TenantRef, app: App) -> dict[str, Any]:
        """ROPC, for tests: no MFA possible, no consent given."""
        user = check_credentials(self.state, ref, app, self._required("username"), self._required("password"))
        scope = self.get_body_argument("scope", "")
        request = parse_scopes(scope)
        return self.issue(TokenGrant(user, app, request, False, "offline_access" in request.oidc, scope))

    def client_credentials(self, ref: TenantRef, app: App) -> dict[str, Any]:
        """An app-only token; the scope must be ``<resource>/.default``."""
        if app.client_secret is None:
            raise MISSING_SECRET()
        scope = self._required("scope")
        if any(not s.endswith("/.default") for s in scope.split()):
            raise CLIENT_CREDENTIALS_SCOPE(scope=scope)
        resource = parse_scopes(scope).resource
        assert resource is not None
        token, expires_in = app_token(self.state, app, resource)
        self.principal = app.client_id
        return bearer_answer(token, expires_in)

    # -- answers -------------------------------------------------------------------------
    def issue(self, grant: TokenGrant) -> dict[str, Any]:
        """Check consent and MFA, then mint: access token, refresh token (offline_access), id_token (openid)."""
        user, app = grant.user, grant.app
        resource, permissions = granted(grant.request)
        if not Consents(self.state).has(app, user, resource):
            raise CONSENT_REQUIRED(client_id=app.client_id, name=app.display_name)
        if user.mfa_required and not grant.mfa:
            raise MFA_REQUIRED(resource=resource.app_id)
        token, expires_in = access_token(self.state, user, app, resource, permissions)
        answer = bearer_answer(token, expires_in, scope_string(resource, permissions))
        if grant.offline:
            answer["refresh_token"] = RefreshTokens(self.state).issue(user, app, grant.refresh_scope, grant.mfa)
        if "openid" in grant.request.oidc:
            answer["id_token"] = id_token(self.state, user, app, grant.nonce, issuer(self.state, user.tenant_id))
        if self.get_body_argument("client_info", None) == "1":
            answer["client_info"] = client_info(user)
        self.principal = user.username
        return answer


GRANTS: dict[str, GrantHandler] = {
    "authorization_code": TokenEndpoint.authorization_code,
    "refresh_token": TokenEndpoint.refresh_token,
    "password": TokenEndpoint.password,
    "client_credentials": TokenEndpoint.client_credentials,
}
