"""The user space's configuration (``c.UserSpace``), shared by the spawner and the hub's instance API."""

from __future__ import annotations

from urllib.parse import urlsplit

from traitlets import CaselessStrEnum, Float, Integer, Unicode
from traitlets.config import Configurable


class UserSpace(Configurable):
    """One private Azure File Share per user, mounted on every compute instance of that user."""

    account_url = Unicode(
        "",
        config=True,
        help="""Azure Files endpoint of the storage account holding the users' shares,
        e.g. https://<account>.file.core.windows.net. Empty: no user space.""",
    )
    account_key = Unicode(
        "",
        config=True,
        help="""The storage account key, held by the hub only: it creates shares and signs
        share-scoped SAS. Load it from the environment (AML_USERSPACE_ACCOUNT_KEY); it never
        reaches a compute instance.""",
    )
    instance_credential = CaselessStrEnum(
        ["sas", "rbac"],
        default_value="sas",
        config=True,
        help="""What an instance mounts the share with. "sas": a service SAS for that one share,
        bound to a stored access policy of its server, which the hub extends while the server
        runs and deletes when it stops (docs/user-space.md). "rbac": the user's own delegated
        Storage token (each user needs a data role scoped to their share; not mounted yet).""",
    )
    quota_gib = Integer(100, min=1, max=102400, config=True, help="Quota of each new share, in GiB.")
    mount_path = Unicode("~/userfiles", config=True, help="Where the share appears on every instance (~ is the notebook user's home).")
    share_folder = Unicode(
        "files",
        config=True,
        help="""The folder of the share that is mounted (created on first write). Not the share's root:
        rclone then makes a stray directory named '．' there (docs/emulator-fidelity.md).""",
    )
    sas_lifetime_minutes = Integer(
        240,
        min=10,
        max=24 * 60,
        config=True,
        help="""How long a server's stored access policy (its mount's credential) lasts without the hub:
        extended to this on every start and, once half of it has passed, while the server runs;
        deleted when the server stops.""",
    )
    ca_bundle = Unicode("", config=True, help="CA bundle for the storage endpoint (the local emulator's); empty: the system's.")
    timeout_seconds = Float(30.0, config=True, help="Timeout of each storage call made by the hub.")

    @property
    def enabled(self) -> bool:
        return bool(self.account_url)

    @property
    def account_name(self) -> str:
        """``https://acct.file.core.windows.net`` -> acct; path-style ``https://127.0.0.1:port/acct`` -> acct."""
        parts = urlsplit(self.account_url)
        host = parts.hostname or ""
        if host.replace(".", "").isdigit() or host in ("localhost", "::1"):
            return parts.path.strip("/").split("/")[0]
        return host.split(".")[0]

    def share_url(self, share: str) -> str:
        return f"{self.account_url.rstrip('/')}/{share}"
