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
        signed by the hub, valid for `sas_lifetime_minutes`. "rbac": the user's own delegated
        Storage token (each user needs a data role scoped to their share).""",
    )
    quota_gib = Integer(100, min=1, max=102400, config=True, help="Quota of each new share, in GiB.")
    mount_path = Unicode("~/userfiles", config=True, help="Where the share appears on every instance.")
    sas_lifetime_minutes = Integer(60, min=5, max=24 * 60, config=True, help="Lifetime of each share-scoped SAS.")
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
