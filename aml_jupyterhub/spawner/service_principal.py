"""Run ``AMLSpawner`` as a service principal, with an admin's map of hub users to Entra identities.

For hubs without delegated Entra sign-in (e.g. ``DummyAuthenticator`` while
trying the spawner): the hub, not the user, creates and starts the compute
instances, and each instance is still *assigned* to its user's Entra identity.
In ``jupyterhub_config.py``::

    from aml_jupyterhub.spawner.service_principal import arm_credential_from_env, owners_from_file

    c.AMLSpawner.arm_credential = arm_credential_from_env()            # AML_SP_* variables
    c.AMLSpawner.owner = owners_from_file(os.environ["AML_OWNERS_FILE"])

The service principal needs a role that may create compute instances on
behalf of others in the workspace (Contributor, or a custom role with
``Microsoft.MachineLearningServices/workspaces/computes/*``); see ``docs/rbac.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken

from .errors import ComputeError
from .specs import Owner

ENV_PREFIX = "AML_SP_"
ARM_SCOPE = "https://management.azure.com/.default"


class ServicePrincipalConfigError(ValueError):
    """The service principal or the owner map is incomplete or malformed (raised when the config loads)."""


class UnmappedUser(ComputeError):
    """The hub user has no Entra identity in the admin's owner map (shown on the spawn page)."""

    def __init__(self, username: str) -> None:
        super().__init__(
            f"No Microsoft Entra identity is configured for {username}, so no compute instance can be "
            "assigned to you. Ask your administrator to add you to the hub's owner map."
        )


class FixedScopeCredential:
    """An async TokenCredential that always asks its inner credential for one scope.

    azure-ai-ml asks for ``<resource_manager URL>/.default``, which is not a
    resource Entra knows when ARM is elsewhere (a private endpoint, the local
    emulator). Which resource the hub's identity acts on is the hub's decision,
    as for the delegated credential.
    """

    def __init__(self, credential: Any, scope: str = ARM_SCOPE) -> None:
        self.credential = credential
        self.scope = scope

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return await self.credential.get_token(self.scope)

    async def close(self) -> None:
        await self.credential.close()

    async def __aenter__(self) -> FixedScopeCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        return None


def service_principal_credential(
    tenant_id: str,
    client_id: str,
    client_secret: str,
    *,
    authority_host: str = "",
    ca_bundle: str = "",
    scope: str = ARM_SCOPE,
) -> FixedScopeCredential:
    """An async ``ClientSecretCredential`` for ``scope`` (ARM by default)."""
    from azure.identity.aio import ClientSecretCredential

    from azure.identity import AzureAuthorityHosts

    kwargs: dict[str, Any] = {}
    if authority_host:
        kwargs["authority"] = authority_host
        # Instance discovery asks login.microsoftonline.com to vouch for the authority:
        # only the public and sovereign clouds pass it.
        known = {AzureAuthorityHosts.AZURE_PUBLIC_CLOUD, AzureAuthorityHosts.AZURE_CHINA, AzureAuthorityHosts.AZURE_GOVERNMENT}
        host = urlsplit(authority_host if "://" in authority_host else "https://" + authority_host).hostname
        kwargs["disable_instance_discovery"] = host not in known
    if ca_bundle:
        kwargs["connection_verify"] = ca_bundle
    return FixedScopeCredential(ClientSecretCredential(tenant_id, client_id, client_secret, **kwargs), scope)


def arm_credential_from_env(
    prefix: str = ENV_PREFIX, environ: Mapping[str, str] | None = None, *, ca_bundle: str = ""
) -> Callable[[Any, Any], FixedScopeCredential]:
    """An ``AMLSpawner.arm_credential`` hook: one service principal for every user, from environment variables.

    Reads ``{prefix}TENANT_ID``, ``{prefix}CLIENT_ID``, ``{prefix}CLIENT_SECRET`` (required) and
    ``{prefix}AUTHORITY_HOST``, ``{prefix}CA_BUNDLE`` (optional; default ``ca_bundle``). One credential (and token cache)
    is shared by the whole hub process; it is made on first use, inside the hub's event loop.
    """
    env = os.environ if environ is None else environ

    def get(name: str) -> str:
        return env.get(prefix + name, "").strip()

    missing = [prefix + n for n in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET") if not get(n)]
    if missing:
        raise ServicePrincipalConfigError(f"The spawner's service principal needs {', '.join(missing)}.")
    settings = dict(
        tenant_id=get("TENANT_ID"),
        client_id=get("CLIENT_ID"),
        client_secret=get("CLIENT_SECRET"),
        authority_host=get("AUTHORITY_HOST"),
        ca_bundle=get("CA_BUNDLE") or ca_bundle,
    )
    shared: list[FixedScopeCredential] = []

    def arm_credential(spawner: Any, user: Any) -> FixedScopeCredential:
        if not shared:
            shared.append(service_principal_credential(**settings))
        return shared[0]

    return arm_credential


def load_owner_map(path: str | Path) -> dict[str, Owner]:
    """Parse an owner map: ``{"<hub username>": {"oid": "<Entra object id>", "tenant_id": "<tenant id>"}}``."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as e:
        raise ServicePrincipalConfigError(f"Cannot read the owner map {path}: {e.strerror}") from None
    except ValueError as e:
        raise ServicePrincipalConfigError(f"The owner map {path} is not valid JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ServicePrincipalConfigError(f"The owner map {path} must be a JSON object keyed by hub username.")
    owners: dict[str, Owner] = {}
    for username, entry in raw.items():
        if not isinstance(entry, dict) or not entry.get("oid") or not entry.get("tenant_id"):
            raise ServicePrincipalConfigError(
                f"The owner map {path}: {username!r} needs {{\"oid\": ..., \"tenant_id\": ...}}."
            )
        owners[username] = Owner(username, str(entry["oid"]), str(entry["tenant_id"]))
    return owners


def owners_from_map(owners: Mapping[str, Owner]) -> Callable[[Any], Awaitable[Owner]]:
    """An ``AMLSpawner.owner`` hook looking the spawner's user up in ``owners``."""

    async def owner(spawner: Any) -> Owner:
        found = owners.get(spawner.user.name)
        if found is None:
            raise UnmappedUser(spawner.user.name)
        return found

    return owner


def owners_from_file(path: str | Path) -> Callable[[Any], Awaitable[Owner]]:
    """An ``AMLSpawner.owner`` hook from the owner map in ``path`` (read once, when the config loads)."""
    return owners_from_map(load_owner_map(path))
