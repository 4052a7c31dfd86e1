"""The hub's own database on Azure Database for PostgreSQL, signing in with Microsoft Entra ID tokens.

In ``jupyterhub_config.py``::

    from aml_jupyterhub.hubdb import configure_entra_db

    configure_entra_db(c, "postgresql+psycopg://aml-jupyterhub@myserver.postgres.database.azure.com/jupyterhub")

The credential comes from ``AML_HUB_DB_*`` environment variables unless one is
passed. Without this call, ``c.JupyterHub.db_url`` works as usual (passwords
in the URL included). See ``docs/hub-database.md``.
"""

from .config import EntraDatabaseAuth, configure_entra_db
from .connect import stop_supplying, supply_tokens
from .credentials import ENV_PREFIX, HubDatabaseConfigError, credential_from_env
from .tokens import POSTGRES_SCOPE, EntraTokenProvider, HubDatabaseTokenError

__all__ = [
    "ENV_PREFIX",
    "POSTGRES_SCOPE",
    "EntraDatabaseAuth",
    "EntraTokenProvider",
    "HubDatabaseConfigError",
    "HubDatabaseTokenError",
    "configure_entra_db",
    "credential_from_env",
    "stop_supplying",
    "supply_tokens",
]
