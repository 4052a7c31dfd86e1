"""Delegated Entra tokens for the Fabric plug-in, from a configurable source.

The source is ``"module:function"`` taking a resource name and returning an
``AccessToken`` (or a str); the default is :func:`aml_jupyterhub.tokens.get_token`
(the hub's token broker). A token is reused until a minute before it expires or
until the server refuses it (:meth:`BearerTokenProvider.refresh`); if the source
accepts ``force_refresh=True``, a refresh bypasses its own cache too.
"""

from __future__ import annotations

import importlib
import inspect
import threading
import time
from typing import Any, Callable

MARGIN_SECONDS = 60.0


class TokenSourceError(Exception):
    """The token source failed; the message explains why (never contains a token)."""


def load_source(path: str) -> Callable[..., Any]:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise TokenSourceError(f"cannot load the token source {path!r}: {e}") from None


class BearerTokenProvider:
    """Caches one resource's token; thread-safe (sparkmagic's heartbeat thread shares it)."""

    def __init__(self, source: Callable[..., Any] | str, resource: str) -> None:
        self._source_spec = source  # a path is imported on first use, so a bad one fails a request, not the kernel
        self.resource = resource
        self._token: str | None = None
        self._expires_on = 0.0
        self._lock = threading.Lock()
        self.fetches = 0

    def _source(self) -> tuple[Callable[..., Any], bool]:
        """The source function, and whether it takes ``force_refresh``."""
        source = load_source(self._source_spec) if isinstance(self._source_spec, str) else self._source_spec
        try:
            forceable = "force_refresh" in inspect.signature(source).parameters
        except (TypeError, ValueError):
            forceable = False
        return source, forceable

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._expires_on - MARGIN_SECONDS <= time.time():
                self._fetch(force=False)
            assert self._token is not None
            return self._token

    def refresh(self, rejected: str | None) -> str:
        """A new token after the server refused ``rejected`` (unless another thread already replaced it)."""
        with self._lock:
            if self._token is None or self._token == rejected:
                self._fetch(force=True)
            assert self._token is not None
            return self._token

    def _fetch(self, force: bool) -> None:
        source, forceable = self._source()
        try:
            result = source(self.resource, force_refresh=True) if force and forceable else source(self.resource)
        except Exception as e:  # the source's own message (e.g. the hub's "log in again")
            raise TokenSourceError(f"could not get a {self.resource} token: {e}") from None
        self.fetches += 1
        if isinstance(result, str):
            self._token, self._expires_on = result, time.time() + 300
        else:
            self._token, self._expires_on = result.token, float(result.expires_on)


_providers: dict[tuple[str, str], BearerTokenProvider] = {}
_providers_lock = threading.Lock()


def shared_provider(source: str, resource: str) -> BearerTokenProvider:
    """One provider per (source, resource) in this process: the authenticator and adapter share it."""
    with _providers_lock:
        key = (source, resource)
        if key not in _providers:
            _providers[key] = BearerTokenProvider(source, resource)
        return _providers[key]
