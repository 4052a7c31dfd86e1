"""FileREST directory operations: create, read, update, delete and list directories.

Each function performs one operation for an authorized request on a
:class:`~aml_jupyterhub.emulator.files.routes.FilesContext` (see :data:`aml_jupyterhub.emulator.files.operations.ROUTES`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .model import Node
from .properties import (
    listing_properties,
    metadata_headers,
    parse_metadata,
    smb_headers,
    stat_is_dir,
)
from .wire import DirectoryEntry, directory_list_xml, paginate

if TYPE_CHECKING:
    from .context import FilesContext


def create_directory(h: FilesContext) -> None:
    node = h.node()
    smb = h.smb_from_request(node, is_directory=True, creating=True)
    metadata = parse_metadata(h.sreq.headers)
    h.store.create_directory(node)
    h.update_entry(node, smb, metadata=metadata)
    h.respond(201, h.node_headers(node, written=True))


def get_directory(h: FilesContext) -> None:
    node = h.node()
    h.store.require(node, directory=True)
    metadata = h.store.peek_entry(node).get("metadata", {})
    h.respond(200, {**h.node_headers(node, written=False), **metadata_headers(metadata)})


def delete_directory(h: FilesContext) -> None:
    h.store.delete_directory(h.node())
    h.respond(202)


def set_metadata(h: FilesContext, *, directory: bool) -> None:
    """Set Directory Metadata and Set File Metadata."""
    node = h.node()
    h.store.require(node, directory=directory)
    h.update_entry(node, metadata=parse_metadata(h.sreq.headers))
    h.respond(200, h.node_headers(node, written=True))


def set_directory_properties(h: FilesContext) -> None:
    node = h.node()
    h.store.require(node, directory=True)
    h.update_entry(node, h.smb_from_request(node, is_directory=True, creating=False))
    h.respond(200, h.node_headers(node, written=True))


def list_directory(h: FilesContext) -> None:
    node = h.node()
    children = {child.name: child for child in h.store.children(node, h.sreq.param("prefix"))}
    page, next_marker = paginate(sorted(children), h.sreq.param("marker"), h.max_results())
    entries = [e for e in (_listing_entry(h, children[name]) for name in page) if e is not None]
    directory_id = h.node_headers(node, written=False)["x-ms-file-id"]
    h.respond(200, body=directory_list_xml(h.page(next_marker), node.share, node.rel, directory_id, entries))


def _listing_entry(h: FilesContext, child: Node) -> DirectoryEntry | None:
    st = child.stat()
    if st is None:  # removed through the mounted view while listing
        return None
    entry = h.store.peek_entry(child)
    include = h.include()
    smb = smb_headers(child, st, entry, "", h.root_key(child))
    return DirectoryEntry(
        name=child.name,
        is_directory=stat_is_dir(st),
        file_id=smb["x-ms-file-id"],
        properties=listing_properties(st, entry, child, include),
        attributes=smb["x-ms-file-attributes"] if "attributes" in include else None,
        permission_key=smb["x-ms-file-permission-key"] if "permissionkey" in include else None,
    )
