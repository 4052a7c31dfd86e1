"""Give every new PostgreSQL connection of the process a fresh Entra ID token as its password.

Why an engine-wide SQLAlchemy ``do_connect`` listener rather than
``c.JupyterHub.db_kwargs`` (a ``creator`` or a per-engine hook): JupyterHub
passes ``db_kwargs`` to its own engine only. On a new database it stamps the
schema version with alembic, whose ``env.py`` builds a second engine from the
URL alone; that engine must sign in too. So the token is keyed by what a
password belongs to (server host, port and role, like a libpq passfile line),
and supplied to any engine of the process connecting there **without** a
password of its own. Connections that carry a password, or go elsewhere, are
left alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from .tokens import EntraTokenProvider

DEFAULT_PORT = 5432


@dataclass(frozen=True)
class Target:
    """Where a password applies: a role on a server."""

    host: str
    port: int
    user: str

    @classmethod
    def of(cls, host: Any, port: Any, user: Any) -> Target:
        return cls(str(host or "").lower(), int(port or DEFAULT_PORT), str(user or ""))

    @classmethod
    def from_url(cls, url: URL) -> Target:
        return cls.of(url.host or url.query.get("host"), url.port or url.query.get("port"), url.username)


_providers: dict[Target, EntraTokenProvider] = {}
_lock = threading.Lock()


def check_url(url: str | URL) -> URL:
    """``url`` parsed, if it can use Entra sign-in: PostgreSQL, a host, a role, no password."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"Entra ID sign-in is for PostgreSQL; the hub database URL uses {parsed.get_backend_name()!r}.")
    if not parsed.username or not (parsed.host or parsed.query.get("host")):
        raise ValueError("The hub database URL needs the server host and the Entra role name (postgresql://ROLE@HOST/DB).")
    if parsed.password:
        raise ValueError("The hub database URL must not contain a password when Entra ID tokens are used.")
    return parsed


def supply_tokens(url: str | URL, provider: EntraTokenProvider) -> Target:
    """From now on, connections to ``url``'s server as its role get ``provider``'s token as password."""
    target = Target.from_url(check_url(url))
    with _lock:
        if not event.contains(Engine, "do_connect", _set_password):
            event.listen(Engine, "do_connect", _set_password)
        _providers[target] = provider
    return target


def stop_supplying(url: str | URL) -> None:
    """Undo :func:`supply_tokens` for ``url`` (tests, or a reconfigured process)."""
    with _lock:
        _providers.pop(Target.from_url(make_url(url)), None)


def provider_for(url: str | URL) -> EntraTokenProvider | None:
    return _providers.get(Target.from_url(make_url(url)))


def _set_password(dialect: Any, conn_rec: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    if cparams.get("password") or dialect.name != "postgresql":
        return
    provider = _providers.get(Target.of(cparams.get("host"), cparams.get("port"), cparams.get("user")))
    if provider is not None:
        cparams["password"] = provider.token()
