"""The resources a user's refresh token can mint delegated tokens for, by friendly name."""

from __future__ import annotations

# name -> space-separated scopes of ONE resource (Entra mints one resource per request).
DEFAULT_RESOURCES: dict[str, str] = {
    "arm": "https://management.azure.com/user_impersonation",
    "storage": "https://storage.azure.com/user_impersonation",
    # Fabric's Livy API: Code.AccessFabric.All for every call, Code.AccessStorage.All for lakehouse data.
    "fabric": " ".join(
        f"https://api.fabric.microsoft.com/{scope}"
        for scope in ("Lakehouse.Execute.All", "Lakehouse.Read.All", "Code.AccessFabric.All", "Code.AccessStorage.All")
    ),
    "databricks": "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/user_impersonation",
    "graph": "https://graph.microsoft.com/User.Read https://graph.microsoft.com/GroupMember.Read.All",
    "postgres": "https://ossrdbms-aad.database.windows.net/.default",
}


class UnknownResource(KeyError):
    """A resource name the admin did not allow."""

    def __str__(self) -> str:
        return f"Resource {self.args[0]!r} is not allowed on this hub"
