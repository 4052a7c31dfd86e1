"""Fresh delegated access tokens for any allowed resource, minted from the user's refresh token.

Entra refresh tokens rotate on every use, so every redemption for one user
(the sign-in refresh and every resource mint) runs under that user's lock and
stores the newest refresh token before the lock is released. Access tokens are
cached in memory until shortly before they expire; concurrent requests for the
same user wait on the lock and then find the cache filled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from azure.core.credentials import AccessToken

from .entra_client import EntraError, EntraTokenClient, EntraUnavailable, TokenResponse
from .resources import UnknownResource

log = logging.getLogger(__name__)


class NeedsLogin(Exception):
    """The user's refresh token is gone, expired or revoked: they must sign in again."""


class TokenUnavailable(Exception):
    """Microsoft Entra ID issued no token for a reason other than the sign-in (unreachable, failing, refusing)."""


def next_generation(auth_state: dict[str, Any]) -> int:
    return int(auth_state.get("token_generation", 0)) + 1


class DelegatedTokens:
    """Per-user, per-resource delegated tokens (the hub side of the token broker)."""

    def __init__(self, client: EntraTokenClient, resources: dict[str, str], margin_seconds: float = 300) -> None:
        self.client = client
        self.resources = resources
        self.margin = margin_seconds
        self._cache: dict[tuple[str, str], AccessToken] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def scope_for(self, resource: str) -> str:
        try:
            return self.resources[resource]
        except KeyError:
            raise UnknownResource(resource) from None

    def _fresh(self, token: AccessToken | None) -> bool:
        return token is not None and token.expires_on - self.margin > time.time()

    async def get(self, user: Any, resource: str) -> AccessToken:
        """A delegated token for ``resource``, valid for at least the margin."""
        scope = self.scope_for(resource)
        key = (user.name, resource)
        if self._fresh(self._cache.get(key)):
            return self._cache[key]
        async with self._locks[user.name]:
            if self._fresh(self._cache.get(key)):
                return self._cache[key]
            auth_state = await user.get_auth_state() or {}
            response = await self._redeem(user, auth_state, scope)
            await self._store_rotation(user, auth_state, response)
            token = AccessToken(response.access_token, int(response.expires_at))
            self._cache[key] = token
            return token

    async def refresh_sign_in(self, user: Any, scope: str) -> dict[str, Any] | None:
        """Renew the sign-in access token if it is within the margin of expiry.

        Returns the updated auth_state, or None when nothing needed doing.
        Raises :class:`NeedsLogin` when Entra refuses the refresh token.
        """
        async with self._locks[user.name]:
            auth_state = await user.get_auth_state() or {}
            if auth_state.get("expires_at", 0) - self.margin > time.time():
                return None
            response = await self._redeem(user, auth_state, scope)
            auth_state["access_token"] = response.access_token
            auth_state["expires_at"] = response.expires_at
            if response.id_token:
                auth_state["id_token"] = response.id_token
            await self._store_rotation(user, auth_state, response)
            return auth_state

    async def _redeem(self, user: Any, auth_state: dict[str, Any], scope: str) -> TokenResponse:
        refresh_token = auth_state.get("refresh_token")
        if not refresh_token:
            raise NeedsLogin(f"No refresh token stored for {user.name}")
        try:
            return await self.client.refresh(refresh_token, scope)
        except EntraError as e:
            if e.needs_login:
                self.forget(user.name)
                raise NeedsLogin(str(e)) from None
            raise TokenUnavailable(str(e)) from None
        except EntraUnavailable as e:  # unreachable, 429 or 5xx after the client's retries
            raise TokenUnavailable(str(e)) from None

    async def _store_rotation(self, user: Any, auth_state: dict[str, Any], response: TokenResponse) -> None:
        if response.refresh_token:
            auth_state["refresh_token"] = response.refresh_token
        auth_state["token_generation"] = next_generation(auth_state)
        await user.save_auth_state(auth_state)

    def forget(self, username: str) -> None:
        """Drop cached tokens of ``username`` (logout, or their sign-in died)."""
        for key in [k for k in self._cache if k[0] == username]:
            del self._cache[key]

    # -- azure-core credentials ---------------------------------------------
    def credential(self, user: Any, resource: str) -> DelegatedCredential:
        return DelegatedCredential(self, user, resource)


class DelegatedCredential:
    """An ``azure.core`` AsyncTokenCredential for one user and one resource.

    The resource is fixed when the credential is made: SDKs ask for
    cloud-specific scope strings (an emulator's URL, a sovereign cloud), and
    which resource a hub may use on the user's behalf is the hub's decision.
    """

    def __init__(self, tokens: DelegatedTokens, user: Any, resource: str) -> None:
        tokens.scope_for(resource)  # refuse unknown resources early
        self.tokens = tokens
        self.user = user
        self.resource = resource

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return await self.tokens.get(self.user, self.resource)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> DelegatedCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None

    def for_thread(self, loop: asyncio.AbstractEventLoop, timeout: float = 60) -> ThreadCredential:
        """A synchronous TokenCredential for SDK calls made in worker threads (e.g. MLClient)."""
        return ThreadCredential(self, loop, timeout)


class ThreadCredential:
    """A sync ``azure.core`` TokenCredential that asks the hub's loop for tokens.

    Used from worker threads only: calling it on the loop itself would deadlock.
    """

    def __init__(self, credential: DelegatedCredential, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.credential = credential
        self.loop = loop
        self.timeout = timeout

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        future = asyncio.run_coroutine_threadsafe(self.credential.get_token(*scopes), self.loop)
        return future.result(self.timeout)

    def close(self) -> None:
        return None
