"""The hub database's Entra ID credential, built from environment variables only.

Deployments keep secrets out of ``jupyterhub_config.py``; with the default
prefix ``AML_HUB_DB_`` these variables are read:

- ``AML_HUB_DB_TENANT_ID``, ``AML_HUB_DB_CLIENT_ID``, ``AML_HUB_DB_CLIENT_SECRET``:
  a service principal (:class:`~azure.identity.ClientSecretCredential`);
- or ``AML_HUB_DB_MANAGED_IDENTITY``: ``system`` for the machine's
  system-assigned managed identity, or the client id of a user-assigned one
  (:class:`~azure.identity.ManagedIdentityCredential`);
- ``AML_HUB_DB_AUTHORITY_HOST`` (optional): another Entra ID authority than
  ``https://login.microsoftonline.com`` (a sovereign cloud, or the local emulator);
- ``AML_HUB_DB_CA_BUNDLE`` (optional): a CA file to trust for the authority's TLS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlparse

from azure.core.credentials import TokenCredential
from azure.identity import AzureAuthorityHosts, ClientSecretCredential, ManagedIdentityCredential

ENV_PREFIX = "AML_HUB_DB_"
SYSTEM_ASSIGNED = "system"
_KNOWN_AUTHORITIES = {
    AzureAuthorityHosts.AZURE_PUBLIC_CLOUD,
    AzureAuthorityHosts.AZURE_CHINA,
    AzureAuthorityHosts.AZURE_GOVERNMENT,
}


class HubDatabaseConfigError(ValueError):
    """The hub database's Entra ID settings are incomplete or contradictory."""


def _authority_kwargs(authority: str | None) -> dict[str, object]:
    if not authority:
        return {}
    host = urlparse(authority if "://" in authority else "https://" + authority).hostname
    # Instance discovery asks login.microsoftonline.com to vouch for the authority:
    # only public and sovereign clouds can pass it.
    return {"authority": authority, "disable_instance_discovery": host not in _KNOWN_AUTHORITIES}


def credential_from_env(prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None) -> TokenCredential:
    """A service principal or managed identity credential from ``{prefix}*`` variables (see module doc)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(prefix + name, "").strip()

    secret, managed = get("CLIENT_SECRET"), get("MANAGED_IDENTITY")
    transport: dict[str, object] = {"connection_verify": get("CA_BUNDLE")} if get("CA_BUNDLE") else {}
    if secret and managed:
        raise HubDatabaseConfigError(
            f"Set either {prefix}CLIENT_SECRET (a service principal) or {prefix}MANAGED_IDENTITY, not both."
        )
    if secret:
        missing = [prefix + n for n in ("TENANT_ID", "CLIENT_ID") if not get(n)]
        if missing:
            raise HubDatabaseConfigError(f"The hub database's service principal needs {' and '.join(missing)}.")
        return ClientSecretCredential(
            get("TENANT_ID"), get("CLIENT_ID"), secret, **_authority_kwargs(get("AUTHORITY_HOST")), **transport
        )
    if managed:
        client_id = None if managed.lower() == SYSTEM_ASSIGNED else managed
        return ManagedIdentityCredential(client_id=client_id, **transport)
    raise HubDatabaseConfigError(
        "No Entra ID credential for the hub database: set "
        f"{prefix}TENANT_ID, {prefix}CLIENT_ID and {prefix}CLIENT_SECRET (a service principal), "
        f"or {prefix}MANAGED_IDENTITY=system|<client id> (a managed identity)."
    )
