"""Which FileREST operation a request is, and how Azure authorizes it.

A request is routed by its HTTP method, how deep its path is (account, share
or a path inside the share) and its ``restype``/``comp`` query parameters,
as the FileREST API defines them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from . import acl, directory_ops, file_ops, rename, share_ops
from .rbac import READ_FILES, SHARES_DELETE, SHARES_READ, SHARES_WRITE, WRITE_FILES
from .request import Operation, StorageRequest

if TYPE_CHECKING:
    from .context import FilesContext


@dataclass(frozen=True)
class Route:
    """An operation and the function that performs it."""

    op: Operation
    run: Callable[[FilesContext], Awaitable[None] | None]


def _share(name: str, sas: str, srt: str, action: str, run: Callable) -> Route:
    """A share or service management operation (account SAS, key, or management roles)."""
    return Route(Operation(name, sas, srt, (action,), management=True), run)


def _data(name: str, sas: str, actions: tuple[str, ...], run: Callable, srt: str = "o") -> Route:
    """A file or directory data operation."""
    return Route(Operation(name, sas, srt, actions), run)


_GET_SHARE = _share("GetShareProperties", "r", "c", SHARES_READ, share_ops.get_share)
_LIST = _data("ListDirectoriesAndFiles", "l", READ_FILES, directory_ops.list_directory, srt="c")
_GET_DIRECTORY = _data("GetDirectoryProperties", "r", READ_FILES, directory_ops.get_directory)

#: (HTTP method, path depth, restype, comp) -> route. Depth: account, share or path.
ROUTES: dict[tuple[str, str, str, str], Route] = {
    ("GET", "account", "", "list"): _share("ListShares", "l", "s", SHARES_READ, share_ops.list_shares),
    ("PUT", "share", "share", ""): _share("CreateShare", "cw", "c", SHARES_WRITE, share_ops.create_share),
    ("GET", "share", "share", ""): _GET_SHARE,
    ("HEAD", "share", "share", ""): _GET_SHARE,
    ("GET", "share", "share", "metadata"): _share("GetShareMetadata", "r", "c", SHARES_READ, share_ops.get_share),
    ("PUT", "share", "share", "properties"): _share(
        "SetShareProperties", "w", "c", SHARES_WRITE, share_ops.set_share_properties
    ),
    ("PUT", "share", "share", "metadata"): _share("SetShareMetadata", "w", "c", SHARES_WRITE, share_ops.set_share_metadata),
    ("GET", "share", "share", "stats"): _share("GetShareStats", "r", "c", SHARES_READ, share_ops.get_share_stats),
    ("DELETE", "share", "share", ""): _share("DeleteShare", "d", "c", SHARES_DELETE, share_ops.delete_share),
    ("GET", "share", "share", "acl"): _share("GetShareACL", "r", "c", SHARES_READ, acl.get_share_acl),
    ("PUT", "share", "share", "acl"): _share("SetShareACL", "w", "c", SHARES_WRITE, acl.set_share_acl),
    ("GET", "share", "directory", "list"): _LIST,
    ("GET", "path", "directory", "list"): _LIST,
    ("GET", "share", "directory", ""): _GET_DIRECTORY,
    ("HEAD", "share", "directory", ""): _GET_DIRECTORY,
    ("GET", "path", "directory", ""): _GET_DIRECTORY,
    ("HEAD", "path", "directory", ""): _GET_DIRECTORY,
    ("PUT", "path", "directory", ""): _data("CreateDirectory", "cw", WRITE_FILES, directory_ops.create_directory),
    ("DELETE", "path", "directory", ""): _data("DeleteDirectory", "d", WRITE_FILES, directory_ops.delete_directory),
    ("PUT", "path", "directory", "metadata"): _data(
        "SetDirectoryMetadata", "w", WRITE_FILES, partial(directory_ops.set_metadata, directory=True)
    ),
    ("PUT", "path", "directory", "properties"): _data(
        "SetDirectoryProperties", "w", WRITE_FILES, directory_ops.set_directory_properties
    ),
    ("PUT", "path", "directory", "rename"): _data(
        "RenameDirectory", "w", WRITE_FILES, partial(rename.rename, directory=True)
    ),
    ("PUT", "path", "", "rename"): _data("RenameFile", "w", WRITE_FILES, partial(rename.rename, directory=False)),
    ("PUT", "path", "", ""): _data("CreateFile", "cw", WRITE_FILES, file_ops.create_file),
    ("GET", "path", "", ""): _data("GetFile", "r", READ_FILES, file_ops.get_file),
    ("HEAD", "path", "", ""): _data("GetFileProperties", "r", READ_FILES, file_ops.get_file),
    ("GET", "path", "", "metadata"): _data("GetFileMetadata", "r", READ_FILES, file_ops.get_file_metadata),
    ("PUT", "path", "", "range"): _data("PutRange", "w", WRITE_FILES, file_ops.put_range),
    ("PUT", "path", "", "metadata"): _data(
        "SetFileMetadata", "w", WRITE_FILES, partial(directory_ops.set_metadata, directory=False)
    ),
    ("PUT", "path", "", "properties"): _data("SetFileProperties", "w", WRITE_FILES, file_ops.set_file_properties),
    ("DELETE", "path", "", ""): _data("DeleteFile", "d", WRITE_FILES, file_ops.delete_file),
}


def depth(request: StorageRequest) -> str:
    if request.share is None:
        return "account"
    return "path" if request.rel else "share"


def find_route(request: StorageRequest) -> Route | None:
    restype = (request.param("restype") or "").lower()
    comp = (request.param("comp") or "").lower()
    return ROUTES.get((request.method, depth(request), restype, comp))
