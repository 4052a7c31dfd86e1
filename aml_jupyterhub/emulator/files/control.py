"""Control API of the emulated Azure Files: shares with usage and on-disk path, storage roles.

Mounted under ``/_emulator/files/`` on the control port; used through
:class:`~.client.EmulatorControl` (``files_*`` methods).
"""

from __future__ import annotations

from typing import Any

from ..core.config import StorageAccount
from ..core.control import ControlHandler
from ..core.handlers import ServiceError
from ..core.state import EmulatorState
from .model import FileStore


def describe_share(store: FileStore, account: str, name: str) -> dict[str, Any]:
    """What the control API tells about one share: settings, byte usage and on-disk path."""
    record = store.share(account, name)
    return {
        "account": account,
        "name": name,
        "quota_gib": record["quota"],
        "metadata": dict(record["metadata"]),
        "usage_bytes": store.usage_bytes(account, name),
        "path": str(store.share_root(account, name)),
        "etag": record["etag"],
        "last_modified": record["last_modified"],
    }


class SharesControl(ControlHandler):
    """``GET /_emulator/files/shares[?account=]``: every share with metadata, usage and path."""

    def get(self) -> None:
        store = FileStore(self.state)
        wanted = self.get_argument("account", None)
        accounts = [wanted] if wanted else [a.name for a in self.state.config.storage_accounts]
        shares = [describe_share(store, a, n) for a in accounts for n in store.share_names(a)]
        self.send_json(200, {"shares": shares})


class ShareControl(ControlHandler):
    """``GET /_emulator/files/shares/{account}/{share}``: one share, including its on-disk path."""

    def get(self, account: str, share: str) -> None:
        self.send_json(200, describe_share(FileStore(self.state), account, share))


class RoleControl(ControlHandler):
    """``PUT|DELETE /_emulator/files/accounts/{account}/roles/{oid}[?share=]``: a storage role assignment.

    PUT takes ``{"role": "<built-in role name>"}``. The test fixture ``control``
    restores the configuration after each test, so assignments do not leak.
    """

    def _account(self, name: str) -> StorageAccount:
        account = self.state.config.storage_account(name)
        if account is None:
            raise ServiceError(404, "UnknownAccount", "No such storage account in the emulator's configuration.")
        return account

    def _key(self, oid: str) -> str:
        share = self.get_argument("share", None)
        return f"{oid}/{share}" if share else oid

    def put(self, account: str, oid: str) -> None:
        assignments = self._account(account).role_assignments
        assignments[self._key(oid)] = self.json_body().get("role", "")
        self.send_json(200, {"assignments": assignments})

    def delete(self, account: str, oid: str) -> None:
        assignments = self._account(account).role_assignments
        assignments.pop(self._key(oid), None)
        self.send_json(200, {"assignments": assignments})


_CONTROL_PATHS = (
    ("shares", SharesControl),
    ("shares/([^/]+)/([^/]+)", ShareControl),
    ("accounts/([^/]+)/roles/([^/]+)", RoleControl),
)


def control_routes(state: EmulatorState) -> list:
    return [(f"/_emulator/files/{path}", handler, {"state": state}) for path, handler in _CONTROL_PATHS]
