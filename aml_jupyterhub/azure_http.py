"""The hub's one HTTP connection pool for Azure SDK calls (ARM and Storage), shared by every user.

Every user's client sends through the same aiohttp session (their credential
is a pipeline policy, not part of the connection), so connections are kept
alive across users and spawns and the TLS context is built once. A transport
of its own per client would open a TLS connection per user, and azure-core
builds an SSL context per request when given a CA-bundle path.

The session does not "trust the environment" (aiohttp's ``trust_env``, which
azure-core turns on): that reads ``~/.netrc`` and the proxy variables in a
worker thread on *every* request, two thread hops per call on the hub's loop.
The environment's proxy (``HTTPS_PROXY``/``NO_PROXY``) is honoured instead
through :func:`env_proxies`, read once per host, as each client's proxy policy.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
import weakref
from functools import lru_cache
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp
from azure.core.pipeline.transport import AioHttpTransport


class SharedSession:
    """One aiohttp session per event loop and CA bundle."""

    _sessions: ClassVar[weakref.WeakKeyDictionary] = weakref.WeakKeyDictionary()
    max_connections: ClassVar[int] = 100

    @classmethod
    def session(cls, ca_bundle: str | None) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        sessions = cls._sessions.setdefault(loop, {})
        session = sessions.get(ca_bundle)
        if session is None or session.closed:
            tls: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
            connector = aiohttp.TCPConnector(ssl=tls, limit=cls.max_connections)
            # As azure-core's own session, but with no cookie jar (every user's calls share it) and
            # without trust_env (see the module's docstring).
            session = sessions[ca_bundle] = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False
            )
        return session

    @classmethod
    def transport(cls, ca_bundle: str | None) -> AioHttpTransport:
        """A transport on the shared session; closing it leaves the session open (for the next client).

        Requests keep azure-core's ``connection_verify=True``, so aiohttp uses the connector's TLS context.
        """
        return AioHttpTransport(session=cls.session(ca_bundle), session_owner=False)

    @classmethod
    async def close_all(cls) -> None:
        """Close this loop's sessions (tests; a hub process ends with its loop)."""
        for session in cls._sessions.pop(asyncio.get_running_loop(), {}).values():
            await session.close()


@lru_cache(maxsize=64)
def env_proxies(url: str) -> dict[str, str] | None:
    """The proxy the environment sets for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``), as azure-core's ``proxies``.

    Read once per URL: the hub's environment does not change while it runs.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not parts.hostname or parts.scheme not in proxies or urllib.request.proxy_bypass_environment(parts.hostname, proxies):
        return None
    return {parts.scheme: proxies[parts.scheme]}
