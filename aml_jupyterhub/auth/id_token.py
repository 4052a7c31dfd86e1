"""Validate Entra ID id_tokens: signature against the tenant's JWKS, issuer, audience, lifetime."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
from tornado.httpclient import AsyncHTTPClient, HTTPRequest


class IdTokenError(Exception):
    """The id_token cannot be trusted; the message names the check that failed."""


class OpenIdConfiguration:
    """The tenant's discovery document and signing keys, fetched lazily and cached."""

    def __init__(self, discovery_url: str, ca_certs: str | None = None, timeout: float = 20.0, min_refetch: float = 300):
        self.discovery_url = discovery_url
        self.ca_certs = ca_certs
        self.timeout = timeout
        self.min_refetch = min_refetch
        self._document: dict[str, Any] | None = None
        self._keys: dict[str, Any] = {}
        self._keys_fetched_at = 0.0

    async def _get_json(self, url: str) -> dict[str, Any]:
        request = HTTPRequest(url, request_timeout=self.timeout, connect_timeout=self.timeout, ca_certs=self.ca_certs)
        response = await AsyncHTTPClient().fetch(request)
        return json.loads(response.body)

    async def document(self) -> dict[str, Any]:
        if self._document is None:
            self._document = await self._get_json(self.discovery_url)
        return self._document

    async def key(self, kid: str) -> Any:
        """The public key for ``kid``; refetches the JWKS (rate-limited) when the key is new."""
        stale = time.monotonic() - self._keys_fetched_at > self.min_refetch
        if kid not in self._keys and (not self._keys or stale):
            jwks = await self._get_json((await self.document())["jwks_uri"])
            self._keys = {k["kid"]: jwt.PyJWK(k, algorithm="RS256").key for k in jwks.get("keys", []) if "kid" in k}
            self._keys_fetched_at = time.monotonic()
        if kid not in self._keys:
            raise IdTokenError(f"id_token signed with an unknown key {kid!r}")
        return self._keys[kid]


def _peek(token: str, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` before any check (to find its key and tenant)."""
    try:
        header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as e:
        raise IdTokenError(f"{what} is malformed: {e}") from None
    if not isinstance(header.get("kid", ""), str):
        raise IdTokenError(f"{what} is malformed: its key id is not a string")
    return header, claims


async def _verified(token: str, what: str, oidc: OpenIdConfiguration, kid: str, leeway: float, **checks: Any) -> dict[str, Any]:
    """The claims once the signature (the tenant's JWKS) and ``checks`` (audience, issuer, ...) pass."""
    key = await oidc.key(kid)
    try:
        return jwt.decode(token, key, algorithms=["RS256"], leeway=leeway, **checks)
    except jwt.PyJWTError as e:
        raise IdTokenError(f"{what} rejected: {e}") from None


async def validate_id_token(
    token: str,
    oidc: OpenIdConfiguration,
    client_id: str,
    *,
    allowed_tenants: set[str] | None = None,
    nonce: str | None = None,
    leeway: float = 120,
) -> dict[str, Any]:
    """Return the claims of ``token`` once every check passed, else raise :class:`IdTokenError`."""
    header, unverified = _peek(token, "id_token")
    document = await oidc.document()
    tenant = unverified.get("tid", "")
    if allowed_tenants is not None and tenant not in allowed_tenants:
        raise IdTokenError(f"id_token from tenant {tenant!r}, which this hub does not accept")
    claims = await _verified(
        token, "id_token", oidc, header.get("kid", ""), leeway,
        audience=client_id, issuer=document["issuer"].replace("{tenantid}", tenant),
        options={"require": ["exp", "iat", "aud", "iss", "sub"]},
    )  # fmt: skip
    if nonce is not None and claims.get("nonce") != nonce:
        raise IdTokenError("id_token nonce does not match the sign-in request")
    return claims


async def hub_tenant(oidc: OpenIdConfiguration) -> str:
    """The tenant id in the discovery document's issuer; empty for multi-tenant (common) endpoints."""
    issuer = (await oidc.document()).get("issuer", "")
    tenant = issuer.rstrip("/").rsplit("/", 2)[-2] if issuer.rstrip("/").endswith("/v2.0") else ""
    return "" if "{" in tenant else tenant


async def validate_instance_identity(token: str, oidc: OpenIdConfiguration, audiences: set[str], leeway: float = 120) -> dict[str, Any]:
    """Claims of a managed-identity access token for the hub's app, else :class:`IdTokenError`.

    Checks the signature against the tenant's JWKS, a v1 issuer matching the
    token's tenant, one of ``audiences``, the lifetime, and that it names the
    Azure resource it belongs to (``xms_mirid``). ``idtyp`` is an optional
    claim (only when the app registration asks for it) and is not required;
    whose identity it is, is :func:`aml_jupyterhub.spawner.identity.token_mismatch`'s job.
    """
    header, unverified = _peek(token, "identity token")
    claims = await _verified(
        token, "identity token", oidc, header.get("kid", ""), leeway,
        audience=list(audiences), issuer=f"https://sts.windows.net/{unverified.get('tid', '')}/",
        options={"require": ["exp", "iat", "aud", "iss", "oid", "tid"]},
    )  # fmt: skip
    if not claims.get("xms_mirid"):
        raise IdTokenError("not a managed-identity token of an Azure resource (no xms_mirid)")
    return claims
