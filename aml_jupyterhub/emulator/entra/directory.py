"""Who an Entra request names: the tenant in its path, the app, the user signing in, where answers may go."""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.config import App, Tenant, User
from ..core.state import EmulatorState
from .errors import (
    APP_NOT_FOUND,
    BAD_PASSWORD,
    MISSING_PARAMETER,
    NOT_MULTI_TENANT,
    OTHER_TENANT,
    TENANT_NOT_FOUND,
    UNKNOWN_USER,
)

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
GENERIC_TENANTS = frozenset({"common", "organizations"})


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


def issuer(state: EmulatorState, tenant_id: str) -> str:
    """The v2 issuer of a tenant (``{tenantid}`` is the placeholder common/organizations publish)."""
    return f"{state.urls['authority']}/{tenant_id}/v2.0"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as JWTs and PKCE use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_info(user: User) -> str:
    """MSAL's ``client_info``: base64url JSON of the user's home object and tenant ids."""
    return b64url(json.dumps({"uid": user.oid, "utid": user.tenant_id}).encode())
