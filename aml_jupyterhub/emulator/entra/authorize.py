"""Entra's front channel: discovery, signing keys, the authorize endpoint's sign-in page, logout."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode, urlsplit

from tornado import template

from ..core.config import App, User
from ..core.state import EmulatorState
from ..core.tokens import OIDC_SCOPES, EntraError, parse_scopes
from .directory import (
    TenantRef,
    check_credentials,
    client_info,
    find_app,
    issuer,
    redirect_allowed,
    resolve_tenant,
)
from .errors import (
    INVALID_PROMPT,
    LOGIN_REQUIRED,
    MISSING_PARAMETER,
    PKCE_METHOD,
    PKCE_SIZE,
    REDIRECT_MISMATCH,
    UNKNOWN_INSTANCE,
    UNSUPPORTED_RESPONSE_TYPE,
    EntraHandler,
    aadsts_message,
    utc_stamp,
)
from .model import CODE_LIFETIME, AuthCode, Consents, issue_code

PROMPTS = frozenset({"login", "none", "consent", "select_account"})
SESSION_COOKIE = "ESTSAUTH"  # the browser's sign-in session at the authority (single sign-on)
SESSION_SECONDS = 8 * 3600
RESPONSE_MODES = frozenset({"query", "fragment", "form_post"})
#: What an error sent back to the redirect URI carries of the error body.
REDIRECT_ERROR_FIELDS = ("error", "error_description", "error_uri", "suberror")
_TEMPLATES = template.Loader(str(Path(__file__).parent / "templates"))


# -- discovery ---------------------------------------------------------------------------


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
        "issuer": issuer(state, ref.issuer_id),
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

class OpenIdConfiguration(EntraHandler):
    """``GET /{tenant}/v2.0/.well-known/openid-configuration``."""

    def get(self, segment: str) -> None:
        self.send_json(200, discovery_document(self.state, resolve_tenant(self.state, segment)))


class Keys(EntraHandler):
    """``GET /{tenant}/discovery/v2.0/keys``: the signing keys as a JWKS."""

    def get(self, segment: str) -> None:
        ref = resolve_tenant(self.state, segment)
        tenant_issuer = issuer(self.state, ref.issuer_id)
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


# -- authorize requests ------------------------------------------------------------------


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


# -- the sign-in page -------------------------------------------------------------------


class LoginPageHandler(EntraHandler):
    """An endpoint that answers with the sign-in page template (``templates/login.html``)."""

    def render_page(self, status: int, **namespace: Any) -> None:
        """The sign-in page template (escaped), in one of its modes."""
        defaults = {"error": None, "username": "", "users": [], "fields": [], "action": "", "app_name": "",
                    "tenant_name": "", "request_id": self.request_id, "timestamp": utc_stamp(self.state.now())}
        self.set_status(status)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("X-Frame-Options", "DENY")
        self.set_header("Content-Security-Policy", "frame-ancestors 'none'")
        self.finish(_TEMPLATES.load("login.html").generate(**{**defaults, **namespace}))


class Authorize(LoginPageHandler):
    """``/{tenant}/oauth2/v2.0/authorize``: GET shows the sign-in page, POST signs in and redirects back."""

    def _args(self) -> dict[str, str]:
        """The authorize parameters: from the query only, also when the sign-in form is posted."""
        return {name: self.get_query_argument(name) for name in self.request.query_arguments}

    def _trusted(self, segment: str) -> AuthorizeRequest | None:
        """The request if its target can be trusted; otherwise an error page was sent (None)."""
        try:
            return trusted_target(self.state, segment, self._args())
        except EntraError as e:
            self.render_page(400, mode="error", error=aadsts_message(e.aadsts, e.description))
            return None

    def _validated(self, segment: str, silent_ok: bool = False) -> AuthorizeRequest | None:
        """The fully valid request; otherwise an error page or an error redirect was sent (None).

        ``prompt=none`` is answered only from a sign-in session (``silent_ok``); otherwise login_required.
        """
        req = self._trusted(segment)
        if req is None:
            return None
        try:
            validate_authorize(req, self._args())
            if req.prompt == "none" and not (silent_ok and self.session_user(req)):
                raise LOGIN_REQUIRED()
        except EntraError as e:
            self.send_back(req, self._error_params(e))
            return None
        return req

    def _error_params(self, e: EntraError) -> dict[str, str]:
        """An OAuth error response for the redirect URI: the error body's OAuth fields."""
        body = self.error_fields(e.error, e.aadsts, e.description, e.suberror)
        return {name: body[name] for name in REDIRECT_ERROR_FIELDS if name in body}

    def get(self, segment: str) -> None:
        req = self._validated(segment, silent_ok=True)
        if req is None:
            return
        user = None if req.prompt in ("login", "select_account") else self.session_user(req)
        if user is not None:  # single sign-on: this browser signed in here before
            self.principal = user.username
            self.send_back(req, self._code_params(req, user))
        else:
            self.sign_in_page(req, 200, username=req.login_hint)

    def session_user(self, req: AuthorizeRequest) -> User | None:
        """The user of this browser's sign-in session (cookie ``ESTSAUTH``), if still valid."""
        session = self.state.section("entra_sessions").get(self.get_cookie(SESSION_COOKIE, "") or "")
        if not session or session["expires"] < self.state.now():
            return None
        user = next((u for u in self.state.config.users if u.oid == session["oid"]), None)
        return user if user is not None and (req.ref.tenant is None or user.tenant_id == req.ref.tenant.id) else None

    def start_session(self, user: User) -> None:
        session_id = secrets.token_urlsafe(32)
        self.state.section("entra_sessions")[session_id] = {"oid": user.oid, "expires": self.state.now() + SESSION_SECONDS}
        self.state.mark_dirty()
        self.set_cookie(SESSION_COOKIE, session_id, secure=True, httponly=True, samesite="None")

    def post(self, segment: str) -> None:
        req = self._validated(segment)
        if req is None:
            return
        username = self.get_body_argument("loginfmt", "").strip()
        try:
            user = check_credentials(self.state, req.ref, req.app, username, self.get_body_argument("passwd", ""))
        except EntraError as e:
            self.sign_in_page(req, 200, username=username, error=aadsts_message(e.aadsts, e.description))
            return
        self.principal = user.username
        self.start_session(user)
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


class Logout(LoginPageHandler):
    """``/{tenant}/oauth2/v2.0/logout``: back to ``post_logout_redirect_uri`` (loopback or registered), else a page."""

    def get(self, segment: str) -> None:
        resolve_tenant(self.state, segment)
        target = self.get_query_argument("post_logout_redirect_uri", "")
        if target and any(redirect_allowed(app, target) for app in self.state.config.apps):
            self.redirect(target)
        else:
            self.render_page(200, mode="signed_out")

    post = get
