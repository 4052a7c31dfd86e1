"""FileREST share and service operations: list, create, read, update and delete shares.

Each function performs one operation for an authorized request on a
:class:`~aml_jupyterhub.emulator.files.routes.FilesContext` (see :data:`aml_jupyterhub.emulator.files.operations.ROUTES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import MAX_QUOTA_GIB
from .properties import metadata_headers, parse_metadata
from .wire import ShareItem, http_date, paginate, share_list_xml, share_stats_xml

if TYPE_CHECKING:
    from .context import FilesContext

#: Azure's default quota for a standard share without large file shares (5 TiB).
DEFAULT_QUOTA_GIB = 5120


def list_shares(h: FilesContext) -> None:
    prefix = h.sreq.param("prefix") or ""
    names = [n for n in h.store.share_names(h.account.name) if n.startswith(prefix)]
    page, next_marker = paginate(names, h.sreq.param("marker"), h.max_results())
    with_metadata = "metadata" in h.include()
    items = [_share_item(h, name, with_metadata) for name in page]
    h.respond(200, body=share_list_xml(h.page(next_marker), items))


def _share_item(h: FilesContext, name: str, with_metadata: bool) -> ShareItem:
    record = h.store.share(h.account.name, name)
    properties = {
        "Last-Modified": http_date(record["last_modified"]),
        "Etag": record["etag"],
        "Quota": record["quota"],
        "AccessTier": "TransactionOptimized",
        "EnabledProtocols": "SMB",
    }
    return ShareItem(name, properties, dict(record["metadata"]) if with_metadata else None)


def _quota(h: FilesContext, default: int | None) -> int | None:
    return h.int_header("x-ms-share-quota", 1, MAX_QUOTA_GIB, default)


def share_headers(record: dict[str, Any]) -> dict[str, str]:
    return {"ETag": record["etag"], "Last-Modified": http_date(record["last_modified"])}


def create_share(h: FilesContext) -> None:
    metadata = parse_metadata(h.sreq.headers)
    record = h.store.create_share(h.account.name, h.share, _quota(h, DEFAULT_QUOTA_GIB) or DEFAULT_QUOTA_GIB, metadata)
    h.respond(201, share_headers(record))


def get_share(h: FilesContext) -> None:
    """Get Share Properties (GET/HEAD) and Get Share Metadata."""
    record = h.store.share(h.account.name, h.share)
    headers = {
        **share_headers(record),
        **metadata_headers(record["metadata"]),
        "x-ms-share-quota": str(record["quota"]),
        "x-ms-access-tier": "TransactionOptimized",
        "x-ms-enabled-protocols": "SMB",
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
    }
    h.respond(200, headers)


def set_share_properties(h: FilesContext) -> None:
    record = h.store.update_share(h.account.name, h.share, quota=_quota(h, None))
    h.respond(200, share_headers(record))


def set_share_metadata(h: FilesContext) -> None:
    record = h.store.update_share(h.account.name, h.share, metadata=parse_metadata(h.sreq.headers))
    h.respond(200, share_headers(record))


def get_share_stats(h: FilesContext) -> None:
    h.store.share(h.account.name, h.share)
    h.respond(200, body=share_stats_xml(h.store.usage_bytes(h.account.name, h.share)))


def delete_share(h: FilesContext) -> None:
    # x-ms-delete-snapshots is accepted: the emulator keeps no snapshots.
    h.store.delete_share(h.account.name, h.share)
    h.respond(202)
