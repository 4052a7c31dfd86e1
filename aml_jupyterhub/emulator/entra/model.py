"""What Entra remembers between requests: single-use authorization codes, hashed refresh tokens, consent.

Codes and refresh tokens are kept only under their SHA-256 digest: codes in
memory (``state.runtime["entra_codes"]``), refresh-token records and consent
in persisted state sections.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, Callable, TypeVar

from ..core.config import App, User
from ..core.state import EmulatorState
from ..core.tokens import RESOURCES_BY_KEY, Resource, find_resource
from .directory import b64url
from .errors import (
    CODE_EXPIRED,
    CODE_REDEEMED,
    CODE_REDIRECT_MISMATCH,
    INVALID_REFRESH,
    MALFORMED_CODE,
    OTHER_CLIENT,
    PKCE_MISMATCH,
    PKCE_MISSING,
    REFRESH_EXPIRED,
    REPLAYED_REFRESH,
    REVOKED,
    utc_stamp,
)

CODE_LIFETIME = 600
#: Refresh-token records are dropped this long after they expired.
PRUNE_AFTER = 86400

T = TypeVar("T")


def digest(secret: str) -> str:
    """SHA-256 hex of a code or refresh token: the only form in which they are stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def keep_secret(entries: dict[str, T], prefix: str, size: int, entry: T) -> str:
    """Store ``entry`` under the digest of a new random secret and return the secret."""
    secret = prefix + secrets.token_urlsafe(size)
    entries[digest(secret)] = entry
    return secret


def drop_expired(entries: dict[str, T], before: float, expires_at: Callable[[T], float]) -> None:
    """Forget the entries that expired before ``before``."""
    for key in [k for k, entry in entries.items() if expires_at(entry) < before]:
        del entries[key]


def pkce_matches(verifier: str, challenge: str, method: str) -> bool:
    """RFC 7636: ``S256`` compares base64url(SHA-256(verifier)), ``plain`` the verifier itself."""
    computed = b64url(hashlib.sha256(verifier.encode("ascii", "replace")).digest()) if method == "S256" else verifier
    return hmac.compare_digest(computed.encode(), challenge.encode())


def resource_named(name: str) -> Resource | None:
    """A resource by key (``storage``) or identifier (``https://storage.azure.com``)."""
    return RESOURCES_BY_KEY.get(name) or find_resource(name)


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
    drop_expired(codes, state.now() - CODE_LIFETIME, attrgetter("expires_at"))
    return keep_secret(codes, "1.A", 64, code)


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


# -- persisted grants: refresh tokens and consent ------------------------------------


class RefreshTokens:
    """Refresh tokens, stored by SHA-256 only, in ``state.section("entra_refresh_tokens")``."""

    SECTION = "entra_refresh_tokens"

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.records: dict[str, dict[str, Any]] = state.section(self.SECTION)

    def issue(self, user: User, app: App, scope: str, mfa: bool) -> str:
        """A new opaque refresh token for ``user`` and ``app``; ``scope`` is what a refresh without one redeems.

        Records that expired a day ago are forgotten first (their tokens can only ever be refused).
        """
        now = self.state.now()
        drop_expired(self.records, now - PRUNE_AFTER, itemgetter("expires_at"))
        record = {
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
        token = keep_secret(self.records, "0.A", 96, record)
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


class Consents:
    """Delegated consent per user and app, over the app's ``consented_resources`` default."""

    SECTION = "entra_consent"

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.entries: dict[str, dict[str, list[str]]] = state.section(self.SECTION)

    @staticmethod
    def _key(app: App, user: User) -> str:
        return f"{app.client_id}/{user.oid}"

    def has(self, app: App, user: User, resource: Resource) -> bool:
        """Whether ``user`` consented to ``app`` acting on ``resource`` (a withdrawal beats the default)."""
        entry = self.entries.get(self._key(app, user), {})
        if resource.key in entry.get("withdrawn", []):
            return False
        by_default = any(name == "*" or resource_named(name) is resource for name in app.consented_resources)
        return by_default or resource.key in entry.get("granted", [])

    def set(self, app: App, user: User, keys: list[str], consented: bool) -> None:
        """Grant (``consented``) or withdraw consent to the resources ``keys``."""
        entry = self.entries.setdefault(self._key(app, user), {"granted": [], "withdrawn": []})
        add, remove = ("granted", "withdrawn") if consented else ("withdrawn", "granted")
        entry[add] = sorted(set(entry[add]) | set(keys))
        entry[remove] = sorted(set(entry[remove]) - set(keys))
        self.state.mark_dirty()
