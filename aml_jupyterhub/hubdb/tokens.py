"""One Microsoft Entra ID access token per process for the hub's database, refreshed ahead of expiry.

Azure Database for PostgreSQL checks the token only when a connection is
opened, so an open connection outlives its token; every *new* connection needs
a token that is still valid. :class:`EntraTokenProvider` keeps the current one
and fetches the next ``refresh_minutes_before_expiry`` before it expires, once
for all threads (SQLAlchemy connects from whichever thread needs a connection).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError
from traitlets.log import get_logger

POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"

WHAT_TO_CHECK = (
    "Check the tenant id, client id and client secret of the service principal (or that the managed "
    "identity is assigned to this machine), the authority host, and that the principal exists in the tenant."
)


class HubDatabaseTokenError(RuntimeError):
    """No Entra ID access token could be had for the hub database (the message never holds a secret)."""


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def _details(exc: BaseException) -> str:
    """Entra's trace and correlation ids (the lines after the reason), for a support request."""
    lines = [line.strip() for line in str(exc).strip().splitlines()[1:] if line.strip()]
    return ("\n" + "\n".join(lines)) if lines else ""


class EntraTokenProvider:
    """The current access token for ``scope`` from ``credential``, shared by every thread.

    ``token()`` returns the cached token until ``refresh_minutes_before_expiry``
    before it expires, then asks the credential again (one caller fetches,
    concurrent callers wait for its result). When a refresh fails while the
    cached token is still valid, that token is used and the refresh is retried
    on the next call; with no valid token left, :class:`HubDatabaseTokenError`
    says what went wrong and what to check.

    Note: azure-identity credentials keep their own cache and hand out a new
    token only within about 5 minutes of expiry, so a margin above 5 minutes
    can return the same token until then.
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str = POSTGRES_SCOPE,
        refresh_minutes_before_expiry: float = 5.0,
        *,
        what_to_check: str = WHAT_TO_CHECK,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if refresh_minutes_before_expiry < 0:
            raise ValueError("refresh_minutes_before_expiry must not be negative")
        self.credential = credential
        self.scope = scope
        self.margin_seconds = refresh_minutes_before_expiry * 60
        self.what_to_check = what_to_check
        self._clock = clock
        self._lock = threading.Lock()
        self._current: AccessToken | None = None
        self.fetches = 0  # how many tokens were asked for (for diagnostics and tests)

    def __repr__(self) -> str:  # never the token itself
        expires = _utc(self._current.expires_on) if self._current else "none yet"
        return f"<EntraTokenProvider {self.scope} from {type(self.credential).__name__}, expires {expires}>"

    def token(self) -> str:
        """The current token; the next one once within the refresh margin of expiry."""
        with self._lock:
            current = self._current
            if current is None or self._clock() >= current.expires_on - self.margin_seconds:
                self._current = self._refresh(current)
            return self._current.token

    def _refresh(self, current: AccessToken | None) -> AccessToken:
        log = get_logger()
        self.fetches += 1
        try:
            token = self.credential.get_token(self.scope)
        except Exception as exc:
            if current is not None and self._clock() < current.expires_on:
                log.warning(
                    "Could not refresh the hub database's Entra ID token (%s); using the current one until %s.",
                    _first_line(exc),
                    _utc(current.expires_on),
                )
                return current
            error = HubDatabaseTokenError(
                f"Could not get a Microsoft Entra ID access token for the hub database from "
                f"{type(self.credential).__name__} (scope {self.scope}): {_first_line(exc)}. "
                f"{self.what_to_check}{_details(exc)}"
            )
            # Entra's refusals are explained above; keep the traceback for anything unexpected.
            raise error from (None if isinstance(exc, ClientAuthenticationError) else exc)
        log.info("Got an Entra ID token for the hub database (scope %s), valid until %s", self.scope, _utc(token.expires_on))
        return token
