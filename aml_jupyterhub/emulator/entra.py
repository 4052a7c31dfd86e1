"""Entra ID (Microsoft identity platform v2) on the ``authority`` port.

The first path segment is the tenant: its id, a verified domain, or
``organizations``/``common``.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``GET /{tenant}/discovery/v2.0/keys``
- ``GET /{tenant}/oauth2/v2.0/authorize``: the sign-in page (``templates/login.html``);
  posting its form redirects back with a single-use code (10 min)
- ``POST /{tenant}/oauth2/v2.0/token``: ``authorization_code`` (PKCE S256/plain),
  ``refresh_token`` (one resource per request, rotation), ``client_credentials``
  and ``password`` (ROPC)
- ``GET /{tenant}/oauth2/v2.0/logout`` and ``GET /common/discovery/instance``
  (MSAL's authority validation, when given this URL)

Errors use Entra's body (``error``, ``error_description`` with trace lines,
``error_codes``, ids, ``error_uri``, ``suberror``), 400 or 401 for
``invalid_client``; authorize errors go back to a trusted ``redirect_uri`` as
``error``/``error_description`` query parameters, otherwise to an error page.

State: refresh tokens are kept only as SHA-256 digests in
``state.section("entra_refresh_tokens")`` (user, client, scope, expiry,
used/revoked), consent per user and app in ``entra_consent``; both survive a
restart with a data dir. Authorization codes live in memory.

Deviations from Entra ID, each deliberate:

- ``strict_refresh_rotation`` (default on) refuses a refresh token once it was
  redeemed (AADSTS70000); Entra tolerates replays until expiry. It catches
  clients that keep stale refresh tokens.
- Signing in on the page satisfies MFA and grants consent to every requested
  resource (no second factor or consent prompt is shown); there is no browser
  session, so ``prompt=none`` always answers ``login_required``.
- Apps are single-tenant: ``common``/``organizations`` serve discovery but
  sign-in there is AADSTS50194, as for apps created after October 2018.
- Only ``response_type=code``; no device code, OBO, certificates or
  ``private_key_jwt``; the access token's ``scp`` lists resource permissions only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlencode, urlsplit

from tornado import template

from .config import App, Group, Tenant, User, stable_id
from .control import ControlHandler
from .handlers import EmulatorHandler, ServiceError
from .state import EmulatorState
from .tokens import (
    OIDC_SCOPES,
    RESOURCES_BY_KEY,
    EntraError,
    Resource,
    ScopeRequest,
    access_token,
    app_token,
    find_resource,
    id_token,
    parse_scopes,
)

CODE_LIFETIME = 600
#: Refresh-token records are dropped this long after they expired.
PRUNE_AFTER = 86400
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
GENERIC_TENANTS = frozenset({"common", "organizations"})
PROMPTS = frozenset({"login", "none", "consent", "select_account"})
RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
_TEMPLATES = template.Loader(str(Path(__file__).parent / "templates"))


# -- Entra's error catalogue ------------------------------------------------------


@dataclass(frozen=True)
class Aadsts:
    """One AADSTS error: calling it with the text's fields gives the :class:`EntraError` to raise."""

    code: int
    error: str
    text: str
    status: int = 400
    suberror: str | None = None

    def __call__(self, **fields: Any) -> EntraError:
        return EntraError(self.error, self.code, self.text.format(**fields), self.status, self.suberror)


TENANT_NOT_FOUND = Aadsts(
    90002,
    "invalid_request",
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
    "correct cloud. Check with your subscription administrator, this may happen if there are no active "
    "subscriptions for the tenant.",
)
MISSING_PARAMETER = Aadsts(
    900144, "invalid_request", "The request body must contain the following parameter: '{name}'."
)
APP_NOT_FOUND = Aadsts(
    700016,
    "unauthorized_client",
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the "
    "application has not been installed by the administrator of the tenant or consented to by any user in the "
    "tenant. You may have sent your authentication request to the wrong tenant.",
)
NOT_MULTI_TENANT = Aadsts(
    50194,
    "invalid_request",
    "Application '{client_id}'({name}) is not configured as a multi-tenant application. Usage of the /common "
    "endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint "
    "or configure the application to be multi-tenant.",
)
REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_request",
    "The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the "
    "application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your "
    "application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about "
    "how to fix this.",
)
CODE_REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_grant",
    "The reply address '{uri}' does not match the reply address '{expected}' provided when requesting "
    "Authorization code.",
)
UNSUPPORTED_RESPONSE_TYPE = Aadsts(
    700054, "unsupported_response_type", "response_type '{value}' is not enabled for the application."
)
INVALID_PROMPT = Aadsts(90023, "invalid_request", "Invalid value '{value}' for the 'prompt' parameter.")
LOGIN_REQUIRED = Aadsts(50058, "login_required", "A silent sign-in request was sent but no user is signed in.")
PKCE_METHOD = Aadsts(50149, "invalid_request", "Invalid Code_Challenge_method parameter.")
PKCE_SIZE = Aadsts(501491, "invalid_request", "Invalid size of Code_Challenge parameter.")
PKCE_MISSING = Aadsts(
    50148,
    "invalid_grant",
    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
)
PKCE_MISMATCH = Aadsts(
    501481,
    "invalid_grant",
    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
)
UNKNOWN_USER = Aadsts(
    50034,
    "invalid_grant",
    "The user account {upn} does not exist in the {tenant} directory. To sign into this application, the account "
    "must be added to the directory.",
)
BAD_PASSWORD = Aadsts(50126, "invalid_grant", "Error validating credentials due to invalid username or password.")
OTHER_TENANT = Aadsts(
    50020,
    "invalid_grant",
    "User account '{upn}' from identity provider 'https://sts.windows.net/{user_tenant}/' does not exist in tenant "
    "'{tenant}' and cannot access the application '{client_id}'({name}) in that tenant. The account needs to be "
    "added as an external user in the tenant first. Sign out and sign in again with a different Azure Active "
    "Directory user account.",
)
MISSING_SECRET = Aadsts(
    7000218,
    "invalid_client",
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    401,
)
BAD_SECRET = Aadsts(
    7000215,
    "invalid_client",
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not "
    "the client secret ID, for a secret added to app '{client_id}'.",
    401,
)
PUBLIC_CLIENT_SECRET = Aadsts(
    700025,
    "invalid_client",
    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    401,
)
UNSUPPORTED_GRANT = Aadsts(70003, "unsupported_grant_type", "The app requested an unsupported grant type '{value}'.")
MALFORMED_CODE = Aadsts(9002313, "invalid_grant", "Invalid request. Request is malformed or invalid.")
CODE_REDEEMED = Aadsts(
    54005,
    "invalid_grant",
    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing "
    "refresh token.",
)
CODE_EXPIRED = Aadsts(
    70008,
    "invalid_grant",
    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive "
    "authorization request for this user and resource.",
)
OTHER_CLIENT = Aadsts(700007, "invalid_grant", "The grant was issued for a different client id.")
INVALID_REFRESH = Aadsts(
    70000, "invalid_grant", "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid."
)
REPLAYED_REFRESH = Aadsts(
    70000,
    "invalid_grant",
    "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid. The refresh token "
    "was already redeemed and the emulator's strict_refresh_rotation is on (stricter than Entra ID).",
)
REFRESH_EXPIRED = Aadsts(
    700082,
    "invalid_grant",
    "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for {idle}.",
)
REVOKED = Aadsts(
    50173,
    "invalid_grant",
    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have "
    "changed or reset their password. The grant was issued on '{issued}' and the TokensValidFrom date (before "
    "which tokens are not valid) for this user is '{valid_from}'.",
)
CONSENT_REQUIRED = Aadsts(
    65001,
    "invalid_grant",
    "The user or administrator has not consented to use the application with ID '{client_id}' named '{name}'. "
    "Send an interactive authorization request for this user and resource.",
    suberror="consent_required",
)
MFA_REQUIRED = Aadsts(
    50076,
    "interaction_required",
    "Due to a configuration change made by your administrator, or because you moved to a new location, you must "
    "use multi-factor authentication to access '{resource}'.",
    suberror="basic_action",
)
CLIENT_CREDENTIALS_SCOPE = Aadsts(
    1002012,
    "invalid_scope",
    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
    "/.default suffixed to the resource identifier (application ID URI).",
)
UNKNOWN_INSTANCE = Aadsts(50049, "invalid_instance", "Unknown or invalid instance.")
#: What an injected fault (or a tornado error) without an AADSTS code reports, by status.
FAULT_AADSTS = {429: 90055, 500: 50000, 502: 90033, 503: 90033, 504: 90033}
OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "access_denied", 404: "invalid_request",
                405: "invalid_request", 429: "temporarily_unavailable", 500: "server_error"}


def utc_stamp(epoch: float) -> str:
    """Entra's timestamp format: ``2024-05-01 12:00:00Z``."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def error_description(aadsts: int, description: str, trace_id: str, correlation_id: str, now: float) -> str:
    return (
        f"AADSTS{aadsts}: {description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
        f"\r\nTimestamp: {utc_stamp(now)}"
    )


def error_json(
    error: str, aadsts: int, description: str, suberror: str | None, trace_id: str, correlation_id: str, now: float
) -> dict[str, Any]:
    """The body of an Entra ID error answer."""
    body: dict[str, Any] = {
        "error": error,
        "error_description": error_description(aadsts, description, trace_id, correlation_id, now),
        "error_codes": [aadsts],
        "timestamp": utc_stamp(now),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    if suberror:
        body["suberror"] = suberror
    return body


# -- small helpers ----------------------------------------------------------------


def digest(secret: str) -> str:
    """SHA-256 hex of a code or refresh token: the only form in which they are stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs and PKCE use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_info(user: User) -> str:
    """MSAL's ``client_info``: base64url JSON of the user's home object and tenant ids."""
    return b64url(json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode())


def issuer(authority: str, tenant_id: str) -> str:
    """The v2 issuer of a tenant (``{tenantid}`` is the placeholder common/organizations publish)."""
    return f"{authority}/{tenant_id}/v2.0"


def is_loopback(uri: str) -> bool:
    """An http(s) URI on this machine, without a fragment (Entra allows any port for these)."""
    parts = urlsplit(uri)
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK_HOSTS and not parts.fragment


def _without_port(uri: str) -> tuple[str, str, str, str]:
    """What must match between two loopback redirect URIs."""
    parts = urlsplit(uri)
    return parts.scheme, parts.hostname or "", parts.path, parts.query


def redirect_allowed(app: App, uri: str) -> bool:
    """Registered URIs match exactly (loopback ones on any port); with none registered, any loopback URI."""
    if not app.redirect_uris:
        return is_loopback(uri)
    if uri in app.redirect_uris:
        return True
    return is_loopback(uri) and any(
        is_loopback(r) and _without_port(r) == _without_port(uri) for r in app.redirect_uris
    )


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636: ``S256`` compares base64url(SHA-256(verifier)), ``plain`` the verifier itself."""
    computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest()) if method == "S256" else verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def resource_named(name: str) -> Resource | None:
    """A resource by key (``storage``) or identifier (``https://storage.azure.com``)."""
    return RESOURCES_BY_KEY.get(name) or find_resource(name)


def granted(request: ScopeRequest) -> tuple[Resource, tuple[str, ...]]:
    """The resource a token is for: with only OIDC scopes Entra returns a Graph ``User.Read`` token."""
    if request.resource is None:
        return RESOURCES_BY_KEY["graph"], ("User.Read",)
    return request.resource, request.permissions


def scope_string(resource: Resource, permissions: tuple[str, ...]) -> str:
    """The token answer's ``scope``: full scope strings of the one resource."""
    return " ".join(f"{resource.app_id_uri}/{p}" for p in permissions)


# -- tenants and apps ------------------------------------------------------------------


@dataclass(frozen=True)
class TenantRef:
    """The tenant a request's path names; ``tenant`` is None for ``common``/``organizations``."""

    segment: str
    tenant: Tenant | None

    @property
    def path_id(self) -> str:
        return self.tenant.id if self.tenant else self.segment.lower()

    @property
    def issuer_id(self) -> str:
        return self.tenant.id if self.tenant else "{tenantid}"


def resolve_tenant(state: EmulatorState, segment: str) -> TenantRef:
    """The tenant a path's first segment names (AADSTS90002 if none)."""
    if segment.lower() in GENERIC_TENANTS:
        return TenantRef(segment, None)
    tenant = state.config.tenant(segment)
    if tenant is None:
        raise TENANT_NOT_FOUND(tenant=segment)
    return TenantRef(segment, tenant)


def find_app(state: EmulatorState, ref: TenantRef, client_id: str | None) -> App:
    """The app registration ``client_id`` names, if it lives in the tenant the path names."""
    if not client_id:
        raise MISSING_PARAMETER(name="client_id")
    app = state.config.app(client_id)
    if app is None or (ref.tenant is not None and ref.tenant.id != app.tenant_id):
        raise APP_NOT_FOUND(client_id=client_id, tenant=ref.segment)
    if ref.tenant is None:
        raise NOT_MULTI_TENANT(client_id=app.client_id, name=app.display_name)
    return app


def check_credentials(state: EmulatorState, ref: TenantRef, app: App, username: str, password: str) -> User:
    """The user whose password this is, if they may sign in to ``app`` (50034, 50126, 50020 otherwise)."""
    user = state.config.user(username) if username else None
    if user is None or "@" not in username:
        raise UNKNOWN_USER(upn=username or "(empty)", tenant=ref.segment)
    if not hmac.compare_digest(password.encode(), user.password.encode()):
        raise BAD_PASSWORD()
    if user.tenant_id != app.tenant_id:
        raise OTHER_TENANT(
            upn=user.username, user_tenant=user.tenant_id, tenant=ref.segment, client_id=app.client_id,
            name=app.display_name,
        )
    return user


def discovery_document(state: EmulatorState, ref: TenantRef) -> dict[str, Any]:
    """The tenant's OpenID configuration, shaped like Entra's v2 document."""
    authority = state.urls["authority"]
    graph = state.urls.get("graph", "https://graph.microsoft.com")
    base = f"{authority}/{ref.path_id}"
    return {
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "response_modes_supported": sorted(RESPONSE_MODES),
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code"],
        "scopes_supported": sorted(OIDC_SCOPES),
        "issuer": issuer(authority, ref.issuer_id),
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": f"{graph}/oidc/userinfo",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nonce", "preferred_username", "name", "tid", "ver", "email", "oid",
        ],
        "tenant_region_scope": "NA" if ref.tenant else None,
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": urlsplit(graph).netloc,
        "rbac_url": "https://pas.windows.net",
    }


# -- persisted grants: refresh tokens and consent ------------------------------------


class RefreshTokens:
    """Refresh tokens, stored by SHA-256 only, in ``state.section("entra_refresh_tokens")``."""

    SECTION = "entra_refresh_tokens"

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.records: dict[str, dict[str, Any]] = state.section(self.SECTION)

    def issue(self, user: User, app: App, scope: str, mfa: bool) -> str:
        """A new opaque refresh token for ``user`` and ``app``; ``scope`` is what a refresh without one redeems."""
        self._prune()
        token = "0.A" + secrets.token_urlsafe(96)
        now = self.state.now()
        self.records[digest(token)] = {
            "oid": user.oid,
            "upn": user.username,
            "client_id": app.client_id,
            "tenant_id": user.tenant_id,
            "scope": scope,
            "mfa": mfa,
            "issued_at": now,
            "expires_at": now + self.state.config.refresh_token_lifetime,
            "used": False,
            "revoked_at": None,
        }
        self.state.mark_dirty()
        return token

    def check(self, token: str, app: App) -> dict[str, Any]:
        """The record of a refresh token ``app`` may redeem now; raises the Entra error otherwise."""
        record = self.records.get(digest(token))
        if record is None:
            raise INVALID_REFRESH()
        if record["client_id"] != app.client_id:
            raise OTHER_CLIENT()
        issued = utc_stamp(record["issued_at"])
        if record["revoked_at"] is not None:
            raise REVOKED(issued=issued, valid_from=utc_stamp(record["revoked_at"]))
        now = self.state.now()
        if record["expires_at"] <= now:
            raise REFRESH_EXPIRED(issued=issued, idle=f"{int(now - record['issued_at'])} seconds")
        if record["used"] and self.state.config.strict_refresh_rotation:
            raise REPLAYED_REFRESH()
        return record

    def retire(self, token: str) -> None:
        """Mark a redeemed token used (it rotated)."""
        self.records[digest(token)]["used"] = True
        self.state.mark_dirty()

    def revoke_user(self, oid: str) -> int:
        """Revoke every live refresh token of a user (``revokeSignInSessions``); returns how many."""
        now = self.state.now()
        live = [r for r in self.records.values() if r["oid"] == oid and r["revoked_at"] is None]
        for record in live:
            record["revoked_at"] = now
        self.state.mark_dirty()
        return len(live)

    def _prune(self) -> None:
        """Forget records that expired a day ago (their tokens can only ever be refused)."""
        horizon = self.state.now() - PRUNE_AFTER
        for key in [k for k, r in self.records.items() if r["expires_at"] < horizon]:
            del self.records[key]


class Consents:
    """Delegated consent per user and app, over the app's ``consented_resources`` default."""

    SECTION = "entra_consent"

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.entries: dict[str, dict[str, list[str]]] = state.section(self.SECTION)

    def _entry(self, app: App, user: User) -> dict[str, list[str]]:
        return self.entries.setdefault(f"{app.client_id}/{user.oid}", {"granted": [], "withdrawn": []})

    def has(self, app: App, user: User, resource: Resource) -> bool:
        """Whether ``user`` consented to ``app`` acting on ``resource`` (a withdrawal beats the default)."""
        entry = self.entries.get(f"{app.client_id}/{user.oid}", {})
        if resource.key in entry.get("withdrawn", []):
            return False
        by_default = any(name == "*" or resource_named(name) is resource for name in app.consented_resources)
        return by_default or resource.key in entry.get("granted", [])

    def set(self, app: App, user: User, keys: list[str], consented: bool) -> None:
        """Grant (``consented``) or withdraw consent to the resources ``keys``."""
        entry = self._entry(app, user)
        add, remove = ("granted", "withdrawn") if consented else ("withdrawn", "granted")
        entry[add] = sorted(set(entry[add]) | set(keys))
        entry[remove] = sorted(set(entry[remove]) - set(keys))
        self.state.mark_dirty()


# -- authorization codes (in memory, single use) ---------------------------------------


@dataclass
class AuthCode:
    """What a code stands for; kept in memory under the code's SHA-256."""

    client_id: str
    redirect_uri: str
    oid: str
    scope: str  # what redeeming without a scope gets: OIDC scopes + the first resource's
    offline: bool
    nonce: str | None
    challenge: str | None
    challenge_method: str
    expires_at: float
    redeemed: bool = False


def issue_code(state: EmulatorState, code: AuthCode) -> str:
    """Keep ``code`` under the digest of a new random value and return the value.

    Codes expired for longer than their lifetime are dropped; younger ones are
    kept so that a late or repeated redemption gets its precise error.
    """
    codes: dict[str, AuthCode] = state.runtime.setdefault("entra_codes", {})
    horizon = state.now() - CODE_LIFETIME
    for key in [k for k, c in codes.items() if c.expires_at < horizon]:
        del codes[key]
    value = "1.A" + secrets.token_urlsafe(64)
    codes[digest(value)] = code
    return value


def redeem_code(state: EmulatorState, value: str, app: App, redirect_uri: str, verifier: str | None) -> AuthCode:
    """Check and burn a code: single use, 10 minutes, same client and redirect URI, PKCE."""
    code: AuthCode | None = state.runtime.get("entra_codes", {}).get(digest(value))
    if code is None:
        raise MALFORMED_CODE()
    if code.redeemed:
        raise CODE_REDEEMED()
    if code.expires_at <= state.now():
        raise CODE_EXPIRED()
    if code.client_id != app.client_id:
        raise OTHER_CLIENT()
    code.redeemed = True
    if redirect_uri != code.redirect_uri:
        raise CODE_REDIRECT_MISMATCH(uri=redirect_uri, expected=code.redirect_uri)
    if code.challenge is not None:
        if not verifier:
            raise PKCE_MISSING()
        if not pkce_matches(verifier, code.challenge, code.challenge_method):
            raise PKCE_MISMATCH()
    return code


# -- authorize requests --------------------------------------------------------------------


@dataclass
class AuthorizeRequest:
    """A validated ``/authorize`` request (see :func:`trusted_target` and :func:`validate_authorize`)."""

    ref: TenantRef
    app: App
    redirect_uri: str
    state: str | None
    response_mode: str = "query"
    resources: list[str] = field(default_factory=list)  # resource keys the user consents to
    default_scope: str = ""
    offline: bool = False
    nonce: str | None = None
    challenge: str | None = None
    challenge_method: str = "plain"
    login_hint: str = ""
    prompt: str | None = None
    client_info: bool = False


def trusted_target(state: EmulatorState, segment: str, args: Mapping[str, str]) -> AuthorizeRequest:
    """Tenant, app and redirect URI: until these check out, errors cannot be sent back to the app."""
    ref = resolve_tenant(state, segment)
    app = find_app(state, ref, args.get("client_id"))
    uri = args.get("redirect_uri")
    if not uri:
        raise MISSING_PARAMETER(name="redirect_uri")
    if not redirect_allowed(app, uri):
        raise REDIRECT_MISMATCH(uri=uri, client_id=app.client_id)
    mode = args.get("response_mode", "query")
    return AuthorizeRequest(ref, app, uri, args.get("state"), mode if mode in RESPONSE_MODES else "query")


def consent_scopes(scope: str) -> tuple[list[str], str]:
    """Validate every scope; the authorize leg may name several resources (consent to all at once).

    Returns the resource keys in order and the scope a code redeems by default
    (the OIDC scopes and the first resource's).
    """
    items = scope.split()
    oidc = [s for s in items if s in OIDC_SCOPES]
    keys: list[str] = []
    first: list[str] = []
    for item in items:
        if item in OIDC_SCOPES:
            continue
        resource = parse_scopes(item).resource
        assert resource is not None
        if resource.key not in keys:
            keys.append(resource.key)
        if resource.key == keys[0]:
            first.append(item)
    return keys, " ".join(oidc + first)


def validate_authorize(req: AuthorizeRequest, args: Mapping[str, str]) -> None:
    """The rest of an authorize request; an error here goes back to the app's redirect URI."""
    response_type = args.get("response_type")
    if not response_type:
        raise MISSING_PARAMETER(name="response_type")
    if response_type != "code":
        raise UNSUPPORTED_RESPONSE_TYPE(value=response_type)
    scope = args.get("scope", "")
    if not scope.strip():
        raise MISSING_PARAMETER(name="scope")
    req.resources, req.default_scope = consent_scopes(scope)
    req.offline = "offline_access" in scope.split()
    req.challenge = args.get("code_challenge")
    req.challenge_method = args.get("code_challenge_method", "plain")
    if req.challenge is not None:
        if req.challenge_method not in ("S256", "plain"):
            raise PKCE_METHOD()
        if not 43 <= len(req.challenge) <= 128:
            raise PKCE_SIZE()
    req.prompt = args.get("prompt")
    if req.prompt is not None and req.prompt not in PROMPTS:
        raise INVALID_PROMPT(value=req.prompt)
    req.nonce = args.get("nonce")
    req.login_hint = args.get("login_hint", "")
    req.client_info = args.get("client_info") == "1"


# -- handlers ----------------------------------------------------------------------------


class EntraHandler(EmulatorHandler):
    """Entra ID's dialect: OAuth error JSON with AADSTS codes, no caching of answers."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store, no-cache")
        self.set_header("Pragma", "no-cache")
        client_request_id = self.request.headers.get("client-request-id")
        if client_request_id:
            self.set_header("client-request-id", client_request_id)

    @property
    def correlation_id(self) -> str:
        """The client's ``client-request-id`` (MSAL sends one), else an id of our own, as Entra does."""
        if not hasattr(self, "_correlation_id"):
            self._correlation_id = self.request.headers.get("client-request-id") or str(uuid.uuid4())
        return self._correlation_id

    def default_error_code(self, status: int) -> str:
        return OAUTH_ERRORS.get(status, "temporarily_unavailable" if status >= 500 else "invalid_request")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        aadsts = error.extra.get("aadsts") or FAULT_AADSTS.get(error.status, 90033)
        body = error_json(
            error.code, aadsts, error.message, error.extra.get("suberror"), self.request_id, self.correlation_id,
            self.state.now(),
        )
        return "application/json; charset=utf-8", json.dumps(body).encode()

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, EntraError):
            e = ServiceError(e.status, e.error, e.description, aadsts=e.aadsts, suberror=e.suberror)
        super()._handle_request_exception(e)

    def render_page(self, status: int, **namespace: Any) -> None:
        """The sign-in page template (escaped), in one of its modes."""
        defaults = {"error": None, "username": "", "users": [], "fields": [], "action": "", "app_name": "",
                    "tenant_name": "", "request_id": self.request_id, "timestamp": utc_stamp(self.state.now())}
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.finish(_TEMPLATES.load("login.html").generate(**{**defaults, **namespace}))


class OpenIdConfiguration(EntraHandler):
    """``GET /{tenant}/v2.0/.well-known/openid-configuration``."""

    def get(self, segment: str) -> None:
        self.send_json(200, discovery_document(self.state, resolve_tenant(self.state, segment)))


class Keys(EntraHandler):
    """``GET /{tenant}/discovery/v2.0/keys``: the signing keys as a JWKS."""

    def get(self, segment: str) -> None:
        ref = resolve_tenant(self.state, segment)
        tenant_issuer = issuer(self.state.urls["authority"], ref.issuer_id)
        self.send_json(200, {"keys": [k.jwk(tenant_issuer) for k in self.state.signing_keys]})


class InstanceDiscovery(EntraHandler):
    """``GET /common/discovery/instance``: MSAL's authority validation, for this host only."""

    def get(self) -> None:
        authority = self.state.urls["authority"]
        host = urlsplit(authority).netloc
        endpoint = urlsplit(self.get_query_argument("authorization_endpoint", ""))
        if endpoint.hostname != urlsplit(authority).hostname:  # MSAL sends the host without the port
            raise UNKNOWN_INSTANCE()
        tenant = endpoint.path.strip("/").split("/")[0] or "common"
        self.send_json(200, {
            "tenant_discovery_endpoint": f"{authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })


class Authorize(EntraHandler):
    """``/{tenant}/oauth2/v2.0/authorize``: GET shows the sign-in page, POST signs in and redirects back."""

    def _args(self) -> dict[str, str]:
        """The authorize parameters: from the query only, also when the sign-in form is posted."""
        return {name: self.get_query_argument(name) for name in self.request.query_arguments}

    def _trusted(self, segment: str) -> AuthorizeRequest | None:
        """The request if its target can be trusted; otherwise an error page was sent (None)."""
        try:
            return trusted_target(self.state, segment, self._args())
        except EntraError as e:
            self.render_page(400, mode="error", error=f"AADSTS{e.aadsts}: {e.description}")
            return None

    def _validated(self, segment: str) -> AuthorizeRequest | None:
        """The fully valid request; otherwise an error page or an error redirect was sent (None)."""
        req = self._trusted(segment)
        if req is None:
            return None
        try:
            validate_authorize(req, self._args())
            if req.prompt == "none":
                raise LOGIN_REQUIRED()
        except EntraError as e:
            self.send_back(req, self._error_params(e))
            return None
        return req

    def _error_params(self, e: EntraError) -> dict[str, str]:
        """An OAuth error response for the redirect URI."""
        description = error_description(e.aadsts, e.description, self.request_id, self.correlation_id, self.state.now())
        params = {"error": e.error, "error_description": description,
                  "error_uri": f"https://login.microsoftonline.com/error?code={e.aadsts}"}
        return {**params, **({"suberror": e.suberror} if e.suberror else {})}

    def get(self, segment: str) -> None:
        req = self._validated(segment)
        if req is not None:
            self.sign_in_page(req, 200, username=req.login_hint)

    def post(self, segment: str) -> None:
        req = self._validated(segment)
        if req is None:
            return
        username = self.get_body_argument("loginfmt", "").strip()
        try:
            user = check_credentials(self.state, req.ref, req.app, username, self.get_body_argument("passwd", ""))
        except EntraError as e:
            self.sign_in_page(req, 200, username=username, error=f"AADSTS{e.aadsts}: {e.description}")
            return
        self.principal = user.username
        self.send_back(req, self._code_params(req, user))

    def _code_params(self, req: AuthorizeRequest, user: User) -> dict[str, str]:
        """Consent to what was asked, then a code; the interactive sign-in counts as MFA."""
        Consents(self.state).set(req.app, user, req.resources or ["graph"], consented=True)
        code = AuthCode(
            client_id=req.app.client_id, redirect_uri=req.redirect_uri, oid=user.oid, scope=req.default_scope,
            offline=req.offline, nonce=req.nonce, challenge=req.challenge, challenge_method=req.challenge_method,
            expires_at=self.state.now() + CODE_LIFETIME,
        )
        params = {"code": issue_code(self.state, code), "session_state": str(uuid.uuid4())}
        if req.client_info:
            params["client_info"] = client_info(user)
        return params

    def send_back(self, req: AuthorizeRequest, params: dict[str, str]) -> None:
        """Deliver an authorization response to the app's redirect URI (query, fragment or form post)."""
        if req.state is not None:
            params = {**params, "state": req.state}
        if req.response_mode == "form_post":
            self.render_page(200, mode="form_post", action=req.redirect_uri, fields=sorted(params.items()))
            return
        separator = "#" if req.response_mode == "fragment" else ("&" if "?" in req.redirect_uri else "?")
        self.redirect(req.redirect_uri + separator + urlencode(params))

    def sign_in_page(self, req: AuthorizeRequest, status: int, **namespace: Any) -> None:
        """The form, posting back to this very URL, with the tenant's users to pick from."""
        tenant = req.ref.tenant
        users = [u for u in self.state.config.users if tenant is None or u.tenant_id == tenant.id]
        self.render_page(
            status, mode="sign_in", action=self.request.uri, users=users, app_name=req.app.display_name,
            tenant_name=(tenant.display_name or tenant.domain) if tenant else "any organization", **namespace,
        )


class Logout(EntraHandler):
    """``/{tenant}/oauth2/v2.0/logout``: back to ``post_logout_redirect_uri`` (loopback or registered), else a page."""

    def get(self, segment: str) -> None:
        resolve_tenant(self.state, segment)
        target = self.get_query_argument("post_logout_redirect_uri", "")
        if target and any(redirect_allowed(app, target) for app in self.state.config.apps):
            self.redirect(target)
        else:
            self.render_page(200, mode="signed_out")

    post = get


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
        return {"token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": token}

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
        answer: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": scope_string(resource, permissions),
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        }
        if grant.offline:
            answer["refresh_token"] = RefreshTokens(self.state).issue(user, app, grant.refresh_scope, grant.mfa)
        if "openid" in grant.request.oidc:
            tenant_issuer = issuer(self.state.urls["authority"], user.tenant_id)
            answer["id_token"] = id_token(self.state, user, app, grant.nonce, tenant_issuer)
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


# -- control API (/_emulator/entra/...) -------------------------------------------------


def user_view(user: User) -> dict[str, Any]:
    """A directory user as the control API shows it (never the password)."""
    return {"username": user.username, "oid": user.oid, "tenant_id": user.tenant_id, "display_name": user.display_name,
            "groups": list(user.groups), "mfa_required": user.mfa_required}


class EntraControl(ControlHandler):
    """Control endpoints of the emulated directory; the ``control`` fixture restores the config after a test."""

    def directory_user(self, name: str) -> User:
        """A user by upn or oid, or 404."""
        user = self.state.config.user(name)
        if user is None:
            raise ServiceError(404, "UnknownUser", "No such user in the emulated directory.")
        return user

    def app_from_query(self) -> App:
        """The app ``?client_id=`` names (default: the first configured), or 404."""
        client_id = self.get_query_argument("client_id", None)
        app = self.state.config.app(client_id) if client_id else self.state.config.apps[0]
        if app is None:
            raise ServiceError(404, "UnknownApp", "No such app registration.")
        return app

    def known_groups(self, ids: list[str]) -> list[str]:
        """``ids`` if every group exists, else 404."""
        unknown = [g for g in ids if self.state.config.group(g) is None]
        if unknown:
            raise ServiceError(404, "UnknownGroup", f"No such groups: {unknown}")
        return ids


class RevokeSessions(EntraControl):
    """``POST users/{user}/revoke``: revokeSignInSessions, every refresh token of the user."""

    def post(self, name: str) -> None:
        user = self.directory_user(name)
        self.send_json(200, {"revoked": RefreshTokens(self.state).revoke_user(user.oid)})


class ConsentControl(EntraControl):
    """``PUT|DELETE users/{user}/consent/{resource}[?client_id=]``: grant or withdraw delegated consent."""

    def _change(self, name: str, resource_name: str, consented: bool) -> None:
        """Grant or withdraw, and answer with what changed."""
        user, app = self.directory_user(name), self.app_from_query()
        resource = resource_named(resource_name)
        if resource is None:
            raise ServiceError(404, "UnknownResource", f"No such resource: {resource_name}")
        Consents(self.state).set(app, user, [resource.key], consented)
        self.send_json(200, {"user": user.username, "client_id": app.client_id, "resource": resource.key,
                             "consented": consented})

    def put(self, name: str, resource_name: str) -> None:
        self._change(name, resource_name, True)

    def delete(self, name: str, resource_name: str) -> None:
        self._change(name, resource_name, False)


class MfaControl(EntraControl):
    """``PUT users/{user}/mfa`` with ``{"required": bool}``."""

    def put(self, name: str) -> None:
        user = self.directory_user(name)
        user.mfa_required = bool(self.json_body().get("required", True))
        self.send_json(200, user_view(user))


class UserGroupsControl(EntraControl):
    """``PUT users/{user}/groups`` with ``{"groups": [group ids]}``."""

    def put(self, name: str) -> None:
        user = self.directory_user(name)
        user.groups = self.known_groups(list(self.json_body().get("groups", [])))
        self.send_json(200, user_view(user))


class UsersControl(EntraControl):
    """``POST users``: add a user (``username``; optional ``display_name``, ``password``, ``groups``).

    The tenant is the username's domain; an unknown domain becomes a new tenant.
    """

    def post(self) -> None:
        spec = self.json_body()
        username = str(spec.get("username", ""))
        if "@" not in username or self.state.config.user(username) is not None:
            raise ServiceError(400, "InvalidUser", "Give a new username of the form name@domain.")
        tenant = self._tenant(username.rpartition("@")[2])
        user = User(
            username=username, display_name=spec.get("display_name", username.partition("@")[0]),
            tenant_id=tenant.id, oid=stable_id("user", tenant.id, username), password=spec.get("password", "password"),
            groups=self.known_groups(list(spec.get("groups", []))), mail=username,
        )
        self.state.config.users.append(user)
        self.send_json(201, user_view(user))

    def _tenant(self, domain: str) -> Tenant:
        """The tenant of ``domain``, created if new."""
        tenant = self.state.config.tenant(domain)
        if tenant is None:
            tenant = Tenant(id=stable_id("tenant", domain), domain=domain, display_name=domain)
            self.state.config.tenants.append(tenant)
        return tenant


class GroupsControl(EntraControl):
    """``POST groups`` with ``{"display_name", "security_enabled"?}``: add a group."""

    def post(self) -> None:
        spec = self.json_body()
        name = str(spec.get("display_name", ""))
        if not name:
            raise ServiceError(400, "InvalidGroup", "A group needs a display_name.")
        group = Group(stable_id("group", name), name, bool(spec.get("security_enabled", True)))
        if self.state.config.group(group.id) is None:
            self.state.config.groups.append(group)
        self.send_json(201, {"id": group.id, "display_name": name, "security_enabled": group.security_enabled})


class RefreshTokensControl(EntraControl):
    """``GET refresh-tokens[?user=]``: the stored records (digests, never tokens)."""

    def get(self) -> None:
        name = self.get_query_argument("user", None)
        oid = self.directory_user(name).oid if name else None
        records = RefreshTokens(self.state).records
        view = [{"sha256": k, **r} for k, r in records.items() if oid is None or r["oid"] == oid]
        self.send_json(200, {"refresh_tokens": view})


_TENANT = r"/([^/]+)"


def routes(state: EmulatorState) -> list:
    """The authority port's routes."""
    kw = {"state": state}
    return [
        (r"/common/discovery/instance", InstanceDiscovery, kw),
        (_TENANT + r"/v2\.0/\.well-known/openid-configuration", OpenIdConfiguration, kw),
        (_TENANT + r"/discovery/v2\.0/keys", Keys, kw),
        (_TENANT + r"/oauth2/v2\.0/authorize", Authorize, kw),
        (_TENANT + r"/oauth2/v2\.0/token", TokenEndpoint, kw),
        (_TENANT + r"/oauth2/v2\.0/logout", Logout, kw),
    ]


_CONTROL_PATHS = (
    ("users", UsersControl),
    ("users/([^/]+)/revoke", RevokeSessions),
    ("users/([^/]+)/consent/([^/]+)", ConsentControl),
    ("users/([^/]+)/mfa", MfaControl),
    ("users/([^/]+)/groups", UserGroupsControl),
    ("groups", GroupsControl),
    ("refresh-tokens", RefreshTokensControl),
)


def control_routes(state: EmulatorState) -> list:
    """``/_emulator/entra/...`` on the control port (see :class:`~.client.EmulatorControl` ``entra_*``)."""
    return [(f"/_emulator/entra/{path}", handler, {"state": state}) for path, handler in _CONTROL_PATHS]
