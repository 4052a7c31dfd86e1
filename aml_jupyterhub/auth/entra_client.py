"""Entra ID's v2 token endpoint: typed answers, typed errors, and no token in any message.

Both sign-in (authorization code + PKCE) and every later refresh go through
:class:`EntraTokenClient`, so retries, timeouts and error handling are the
same everywhere. Errors branch on ``error``/``suberror`` (stable), never on
AADSTS numbers (informational).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

NEEDS_LOGIN_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


@dataclass(repr=False)
class TokenResponse:
    """One successful answer of the token endpoint. ``repr`` never shows a token."""

    access_token: str
    expires_at: float
    scope: str
    refresh_token: str | None = None
    id_token: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any], now: float) -> TokenResponse:
        return cls(
            access_token=data["access_token"],
            expires_at=now + int(data.get("expires_in", 3600)),
            scope=data.get("scope", ""),
            refresh_token=data.get("refresh_token"),
            id_token=data.get("id_token"),
        )

    def __repr__(self) -> str:
        return f"TokenResponse(scope={self.scope!r}, expires_at={self.expires_at:.0f})"


class EntraError(Exception):
    """Entra ID refused the request (an OAuth error answer)."""

    def __init__(self, error: str, description: str, suberror: str | None = None, status: int = 400):
        # Keep only the first line ("AADSTS70008: ..."): the rest is trace ids.
        self.error = error
        self.suberror = suberror
        self.description = description.splitlines()[0] if description else ""
        self.status = status
        super().__init__(f"{error}{f' ({suberror})' if suberror else ''}: {self.description}")

    @property
    def needs_login(self) -> bool:
        """True when only a fresh interactive sign-in can help."""
        return self.error in NEEDS_LOGIN_ERRORS or self.suberror in NEEDS_LOGIN_ERRORS


class EntraUnavailable(Exception):
    """Entra ID could not be reached or answered 429/5xx; worth retrying later."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class EntraTokenClient:
    """Async client of ``/oauth2/v2.0/token`` for one confidential app."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        ca_certs: str | None = None,
        timeout: float = 20.0,
        max_retries: int = 2,
        max_retry_after: float = 10.0,
        max_connections: int = 100,
        queue_timeout: float = 300.0,
    ) -> None:
        self.token_url = token_url
        self.client_id = client_id
        self._client_secret = client_secret
        self.ca_certs = ca_certs
        # Built once: tornado would otherwise build (and load the CA file into) a context per request.
        self._tls = ssl.create_default_context(cafile=ca_certs)
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_after = max_retry_after
        # Its own connection pool: token calls must not queue behind the hub's other
        # HTTP traffic (tornado's shared client allows 10 connections).
        self._http = AsyncHTTPClient(force_instance=True, max_clients=max_connections)
        # Calls wait for a connection here, not in tornado's queue, whose wait counts against each
        # request's timeout: a storm of first sign-ins (1000 spawns at once) must queue, not fail.
        self._slots = asyncio.Semaphore(max_connections)
        self.queue_timeout = queue_timeout

    async def redeem_code(self, code: str, redirect_uri: str, code_verifier: str | None, scope: str) -> dict[str, Any]:
        """Exchange an authorization code; returns the raw answer (oauthenticator's token_info)."""
        params = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri, "scope": scope}
        if code_verifier:
            params["code_verifier"] = code_verifier
        return await self._post(params)

    async def refresh(self, refresh_token: str, scope: str) -> TokenResponse:
        """Redeem a refresh token for ``scope`` (one resource). The answer carries the rotated refresh token."""
        now = time.time()
        data = await self._post({"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": scope})
        return TokenResponse.from_json(data, now)

    async def _post(self, params: dict[str, str]) -> dict[str, Any]:
        body = urlencode({**params, "client_id": self.client_id, "client_secret": self._client_secret})
        for attempt in range(self.max_retries + 1):
            try:
                return await self._post_once(body)
            except EntraUnavailable as e:
                if attempt == self.max_retries:
                    raise
                await asyncio.sleep(min(e.retry_after or 0.5 * 2**attempt, self.max_retry_after))
        raise AssertionError("unreachable")

    async def _post_once(self, body: str) -> dict[str, Any]:
        request = HTTPRequest(
            self.token_url,
            method="POST",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            ssl_options=self._tls,
        )
        try:
            await asyncio.wait_for(self._slots.acquire(), self.queue_timeout)
        except asyncio.TimeoutError:
            raise EntraUnavailable(f"no connection to Entra ID was free within {self.queue_timeout:.0f} s") from None
        try:
            response = await self._http.fetch(request, raise_error=False)
        finally:
            self._slots.release()
        if response.code == 599:
            raise EntraUnavailable(f"Could not reach Entra ID: {type(response.error).__name__}")
        if response.code == 429 or response.code >= 500:
            retry_after = response.headers.get("Retry-After")
            raise EntraUnavailable(
                f"Entra ID answered {response.code}", float(retry_after) if retry_after and retry_after.isdigit() else None
            )
        try:
            data = json.loads(response.body)
        except ValueError:
            raise EntraUnavailable(f"Entra ID answered {response.code} with a body that is not JSON") from None
        if "error" in data:
            raise EntraError(data["error"], data.get("error_description", ""), data.get("suberror"), response.code)
        if "access_token" not in data:
            raise EntraUnavailable("Entra ID answered without an access token")
        return data
