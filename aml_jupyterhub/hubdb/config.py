"""``jupyterhub_config.py`` settings for a hub database that signs in with Microsoft Entra ID.

::

    from aml_jupyterhub.hubdb import configure_entra_db

    c.EntraDatabaseAuth.sslmode = "verify-full"   # optional, before the call (see the traits below)
    configure_entra_db(c, "postgresql+psycopg://aml-jupyterhub@myserver.postgres.database.azure.com/jupyterhub")

See ``docs/hub-database.md``.
"""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from traitlets import CaselessStrEnum, Float, Unicode
from traitlets.config import Configurable
from traitlets.log import get_logger

from .connect import check_url, supply_tokens
from .credentials import ENV_PREFIX, credential_from_env
from .tokens import POSTGRES_SCOPE, WHAT_TO_CHECK, EntraTokenProvider

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class EntraDatabaseAuth(Configurable):
    """Sign the hub in to Azure Database for PostgreSQL with Entra ID access tokens."""

    scope = Unicode(
        POSTGRES_SCOPE,
        help="The scope tokens are requested for (Azure Database for PostgreSQL's; change only for another cloud).",
    ).tag(config=True)

    sslmode = CaselessStrEnum(
        SSLMODES,
        default_value="require",
        help="""libpq sslmode for the hub database: `require` encrypts, `verify-full` also checks the
        server's certificate and host name against `sslrootcert`. Tokens are bearer secrets:
        do not send them unencrypted.""",
    ).tag(config=True)

    sslrootcert = Unicode(
        "",
        help="""CA certificates to verify the server with (`verify-ca`/`verify-full`): a file, or
        `system` for the operating system's store. Empty: libpq's default (~/.postgresql/root.crt).""",
    ).tag(config=True)

    refresh_minutes_before_expiry = Float(
        5.0,
        min=0.0,
        help="""Fetch the next token this many minutes before the current one expires. The token is
        checked only when a connection opens; one token is shared by every connection of the process.""",
    ).tag(config=True)

    env_prefix = Unicode(
        ENV_PREFIX,
        help="Prefix of the environment variables the credential is read from when none is passed.",
    ).tag(config=True)

    def db_url(self, db_url: str) -> str:
        """``db_url`` with this object's TLS settings in its query (so every engine made from it uses them)."""
        ssl = {"sslmode": self.sslmode, **({"sslrootcert": self.sslrootcert} if self.sslrootcert else {})}
        return check_url(db_url).update_query_dict(ssl).render_as_string(hide_password=False)

    def install(self, db_url: str, credential: TokenCredential | None = None) -> str:
        """Start supplying tokens for ``db_url``; returns the URL to give ``c.JupyterHub.db_url``."""
        url = self.db_url(db_url)
        what_to_check = WHAT_TO_CHECK
        if credential is None:
            credential = credential_from_env(self.env_prefix)
            what_to_check += f" They come from the {self.env_prefix}* environment variables."
        provider = EntraTokenProvider(
            credential, self.scope, self.refresh_minutes_before_expiry, what_to_check=what_to_check
        )
        target = supply_tokens(url, provider)
        get_logger().info(
            "Hub database: role %r on %s:%s signs in with Entra ID tokens from %s (sslmode=%s)",
            target.user,
            target.host,
            target.port,
            type(credential).__name__,
            self.sslmode,
        )
        return url


def configure_entra_db(c: Any, db_url: str, credential: TokenCredential | None = None, **settings: Any) -> EntraDatabaseAuth:
    """Point ``c.JupyterHub.db_url`` at PostgreSQL with Entra ID sign-in (call from ``jupyterhub_config.py``).

    ``db_url`` names the server, the database and the Entra role, without a
    password. ``credential`` is any azure-identity credential; without one it
    is built from ``AML_HUB_DB_*`` environment variables. ``settings`` override
    ``c.EntraDatabaseAuth`` traits (``sslmode``, ``refresh_minutes_before_expiry``...),
    which are read now: set them before this call.
    """
    unknown = sorted(set(settings) - set(EntraDatabaseAuth.class_trait_names(config=True)))
    if unknown:
        raise TypeError(f"configure_entra_db() got unknown settings: {', '.join(unknown)}")
    auth = EntraDatabaseAuth(config=c, **settings)
    c.JupyterHub.db_url = auth.install(db_url, credential)
    return auth
