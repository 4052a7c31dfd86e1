"""Scopes, resources and the tokens Entra ID mints for them.

The Entra endpoints (``entra.py``) and the control API's test shortcut both
mint through here, and every emulated resource validates with
:func:`require_bearer`, so audiences and claims agree everywhere. Claims
follow Entra's references; ``idtyp`` only where the audience app asks for it
(docs/emulator-fidelity.md).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from .config import GATEWAY_CLIENT_ID, App, User
from .keys import TokenError, validate_bearer
from .state import EmulatorState

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


@dataclass(frozen=True)
class Resource:
    """A first-party resource: what a scope names and what audience its tokens carry."""

    key: str
    app_id_uri: str
    app_id: str
    audience: str
    permissions: tuple[str, ...]
    aliases: tuple[str, ...] = ()

    def names(self) -> set[str]:
        return {n.lower().rstrip("/") for n in (self.app_id_uri, self.app_id, *self.aliases)}


RESOURCES: tuple[Resource, ...] = (
    Resource(
        "arm",
        "https://management.azure.com",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "https://management.azure.com",
        ("user_impersonation",),
        aliases=("https://management.core.windows.net",),
    ),
    Resource(
        "storage",
        "https://storage.azure.com",
        "e406a681-f3d4-42a8-90b6-c2b029497af1",
        "https://storage.azure.com",
        ("user_impersonation",),
    ),
    Resource(
        "graph",
        "https://graph.microsoft.com",
        "00000003-0000-0000-c000-000000000000",
        "00000003-0000-0000-c000-000000000000",
        ("User.Read", "GroupMember.Read.All", "Directory.Read.All", "User.ReadBasic.All"),
    ),
    Resource(
        "fabric",
        "https://api.fabric.microsoft.com",
        "00000009-0000-0000-c000-000000000000",
        "https://api.fabric.microsoft.com",
        (
            "Lakehouse.Execute.All",
            "Lakehouse.Read.All",
            "Item.ReadWrite.All",
            "Workspace.ReadWrite.All",
            "Code.AccessFabric.All",
            "Code.AccessStorage.All",
        ),
        aliases=("https://analysis.windows.net/powerbi/api",),
    ),
    Resource(
        "databricks",
        "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
        "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
        "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d",
        ("user_impersonation",),
    ),
    Resource(
        "postgres",
        "https://ossrdbms-aad.database.windows.net",
        "123cd850-d9df-40bd-94d5-c9f07b7fa203",
        "https://ossrdbms-aad.database.windows.net",
        ("user_impersonation",),
    ),
)

RESOURCES_BY_KEY = {r.key: r for r in RESOURCES}


class EntraError(Exception):
    """An OAuth error as Entra ID reports it (``error``, AADSTS code, ``suberror``)."""

    def __init__(self, error: str, aadsts: int, description: str, status: int = 400, suberror: str | None = None):
        super().__init__(f"AADSTS{aadsts}: {description}")
        self.error = error
        self.aadsts = aadsts
        self.description = description
        self.status = status
        self.suberror = suberror


def find_resource(name: str) -> Resource | None:
    key = name.lower().rstrip("/")
    return next((r for r in RESOURCES if key in r.names()), None)


@dataclass
class ScopeRequest:
    resource: Resource | None
    permissions: tuple[str, ...]  # () when only OIDC scopes were asked
    oidc: frozenset[str]


def parse_scopes(scope: str) -> ScopeRequest:
    """Split a v2 ``scope`` parameter into OIDC scopes and ONE resource's permissions."""
    oidc: set[str] = set()
    found: dict[str, tuple[Resource, set[str]]] = {}
    for item in scope.split():
        if item in OIDC_SCOPES:
            oidc.add(item)
            continue
        if "/" in item:
            uri, _, perm = item.rpartition("/")
        else:  # a bare permission like "User.Read" belongs to Microsoft Graph
            uri, perm = RESOURCES_BY_KEY["graph"].app_id_uri, item
        resource = find_resource(uri)
        if resource is None:
            raise EntraError(
                "invalid_resource",
                500011,
                f"The resource principal named {uri} was not found in the tenant. This can happen if the "
                "application has not been installed by the administrator of the tenant or consented to by "
                "any user in the tenant.",
            )
        if perm != ".default" and perm not in resource.permissions:
            raise EntraError(
                "invalid_scope",
                70011,
                f"The provided request must include a 'scope' input parameter. The provided value for the "
                f"input parameter 'scope' is not valid. The scope {item} is not valid.",
            )
        perms = set(resource.permissions) if perm == ".default" else {perm}
        found.setdefault(resource.key, (resource, set()))[1].update(perms)
    if len(found) > 1:
        raise EntraError(
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' is not valid. "
            "AADSTS28000: Provided value for the input parameter scope is not valid because it contains "
            "more than one resource. Scope " + scope + " is not valid.",
        )
    if not found:
        return ScopeRequest(None, (), frozenset(oidc))
    resource, perms = next(iter(found.values()))
    return ScopeRequest(resource, tuple(sorted(perms)), frozenset(oidc))


def pairwise_sub(oid: str, audience: str) -> str:
    """Entra's ``sub`` is pairwise: stable per user and app/resource, different across them."""
    return hashlib.sha256(f"{oid}|{audience}".encode()).hexdigest()[:43]


def group_claims(state: EmulatorState, user: User) -> dict[str, Any]:
    """The ``groups`` claim, or the overage indication pointing at Graph."""
    if len(user.groups) <= state.config.group_claim_limit:
        return {"groups": list(user.groups)}
    graph = state.urls.get("graph", "https://graph.microsoft.com")
    return {
        "_claim_names": {"groups": "src1"},
        "_claim_sources": {"src1": {"endpoint": f"{graph}/v1.0/users/{user.oid}/getMemberObjects"}},
    }


def _base_claims(state: EmulatorState, tenant_id: str, audience: str, lifetime: int) -> dict[str, Any]:
    now = int(state.now())
    return {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "tid": tenant_id,
        "ver": "1.0",
        "uti": secrets.token_urlsafe(16),
    }


def access_token(
    state: EmulatorState,
    user: User,
    app: App,
    resource: Resource,
    permissions: tuple[str, ...],
    lifetime: int | None = None,
) -> tuple[str, int]:
    """A delegated (user) access token; returns ``(jwt, expires_in)``."""
    lifetime = lifetime or state.config.access_token_lifetime
    claims = _base_claims(state, user.tenant_id, resource.audience, lifetime)
    claims.update(
        {
            "appid": app.client_id,
            "appidacr": "1" if app.client_secret else "0",
            "oid": user.oid,
            "sub": pairwise_sub(user.oid, resource.audience),
            "upn": user.username,
            "unique_name": user.username,
            "name": user.display_name,
            "scp": " ".join(permissions),
        }
    )
    if app.group_claims:
        claims.update(group_claims(state, user))
    return state.sign(_optional_claims(state, claims, idtyp="user")), lifetime


def app_token(state: EmulatorState, app: App, resource: Resource) -> tuple[str, int]:
    """An app-only token (client credentials) for the app's service principal."""
    lifetime = state.config.access_token_lifetime
    claims = _base_claims(state, app.tenant_id, resource.audience, lifetime)
    claims.update(
        {
            "appid": app.client_id,
            "appidacr": "1",
            "oid": app.service_principal_oid,
            "sub": app.service_principal_oid,
            "roles": list(app.app_roles.get(resource.key, [])),
        }
    )
    return state.sign(_optional_claims(state, claims, idtyp="app")), lifetime


def id_token(state: EmulatorState, user: User, app: App, nonce: str | None, issuer: str) -> str:
    """A v2 id_token for ``app`` (audience = client id)."""
    now = int(state.now())
    claims: dict[str, Any] = {
        "aud": app.client_id,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "tid": user.tenant_id,
        "oid": user.oid,
        "sub": pairwise_sub(user.oid, app.client_id),
        "preferred_username": user.username,
        "name": user.display_name,
        "email": user.mail,
        "ver": "2.0",
        "uti": secrets.token_urlsafe(16),
    }
    if nonce:
        claims["nonce"] = nonce
    if app.group_claims:
        claims.update(group_claims(state, user))
    return state.sign(claims)


@dataclass
class Caller:
    """Who a validated bearer token says is calling."""

    oid: str
    tenant_id: str
    name: str  # upn, or the app id for app-only tokens
    is_app: bool
    scopes: frozenset[str]
    roles: frozenset[str]
    claims: dict[str, Any]


def require_bearer(state: EmulatorState, authorization: str | None, resource_key: str) -> Caller:
    """Validate ``Authorization: Bearer ...`` for ``resource_key``; raises :class:`TokenError`."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise TokenError("missing")
    resource = RESOURCES_BY_KEY[resource_key]
    audiences = {resource.audience, resource.audience + "/", resource.app_id_uri, *resource.aliases}
    audiences |= {a + "/" for a in resource.aliases}
    claims = validate_bearer(authorization[7:].strip(), state.signing_keys, audiences, state.now())
    is_app = "scp" not in claims  # app-only tokens carry roles, never scp (idtyp is optional)
    return Caller(
        oid=claims.get("oid", ""),
        tenant_id=claims.get("tid", ""),
        name=claims.get("appid", "") if is_app else claims.get("upn", ""),
        is_app=is_app,
        scopes=frozenset(claims.get("scp", "").split()),
        roles=frozenset(claims.get("roles", [])),
        claims=claims,
    )


def managed_identity_token(
    state: EmulatorState, principal_id: str, client_id: str, tenant_id: str, resource_id: str, audience: str
) -> tuple[str, int]:
    """An app-only token for a compute instance's system-assigned identity (``xms_mirid`` names the instance)."""
    lifetime = state.config.access_token_lifetime
    claims = _base_claims(state, tenant_id, audience, lifetime)
    claims.update(
        {
            "appid": client_id,
            "appidacr": "2",
            "oid": principal_id,
            "sub": principal_id,
            "xms_mirid": resource_id,
            "roles": [],
        }
    )
    return state.sign(_optional_claims(state, claims, idtyp="app")), lifetime


def sso_user_token(state: EmulatorState, user: User, audience: str) -> tuple[str, int]:
    """The signed-in user's token an SSO compute instance's identity endpoint answers without a client id.

    Which client it names and which scopes it carries are not documented (docs/emulator-fidelity.md):
    here the Azure ML gateway's client and ``user_impersonation``.
    """
    lifetime = state.config.access_token_lifetime
    claims = _base_claims(state, user.tenant_id, audience, lifetime)
    claims.update(
        {
            "appid": GATEWAY_CLIENT_ID,
            "appidacr": "0",
            "oid": user.oid,
            "sub": pairwise_sub(user.oid, audience),
            "upn": user.username,
            "unique_name": user.username,
            "name": user.display_name,
            "scp": "user_impersonation",
        }
    )
    return state.sign(_optional_claims(state, claims, idtyp="user")), lifetime


def _optional_claims(state: EmulatorState, claims: dict[str, Any], idtyp: str) -> dict[str, Any]:
    """Add ``idtyp`` only when the token's audience is an app registration that asks for it."""
    audience = str(claims["aud"]).lower().rstrip("/")
    for app in state.config.apps:
        if audience in (app.client_id.lower(), f"api://{app.client_id}".lower()) and "idtyp" in app.optional_claims:
            claims["idtyp"] = idtyp
    return claims


def audience_for(state: EmulatorState, resource: str) -> str | None:
    """The audience of a token for ``resource``: a first-party resource or one of the tenant's apps."""
    wanted = resource.lower().rstrip("/")
    known = find_resource(wanted)
    if known is not None:
        return known.audience
    for app in state.config.apps:
        if wanted in (app.client_id.lower(), f"api://{app.client_id}".lower()):
            return resource.rstrip("/")
    return None
