"""FileREST file operations: create, read (whole or ranged), write ranges, resize, delete.

Each function performs one operation for an authorized request on a
:class:`~aml_jupyterhub.emulator.files.routes.FilesContext` (see :data:`aml_jupyterhub.emulator.files.operations.ROUTES`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.handlers import ServiceError
from .model import MAX_FILE_SIZE, Node
from .properties import (
    content_response_headers,
    invalid_header,
    metadata_headers,
    parse_content,
    parse_metadata,
)

if TYPE_CHECKING:
    from .context import FilesContext

MAX_RANGE = 4 * 1024 * 1024
STREAM_CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_PUT_RANGE_HEADERS = ("ETag", "Last-Modified", "x-ms-request-server-encrypted", "x-ms-file-last-write-time")


def parse_range(value: str) -> tuple[int, int | None] | None:
    """``bytes=a-b`` or ``bytes=a-`` as ``(a, b or None)``; None if absent or not a byte range."""
    match = _RANGE.match(value.strip()) if value else None
    if not match:
        return None
    end = int(match.group(2)) if match.group(2) else None
    if end is not None and end < int(match.group(1)):
        return None
    return int(match.group(1)), end


def invalid_range(size: int) -> ServiceError:
    return ServiceError(
        416,
        "InvalidRange",
        "The range specified is invalid for the current size of the resource.",
        {"Content-Range": f"bytes */{size}"},
    )


def md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 - Content-MD5 is MD5


def requested_range(h: FilesContext) -> tuple[int, int | None] | None:
    return parse_range(h.header("x-ms-range") or h.header("Range"))


# -- create, read, delete ----------------------------------------------------------------
def create_file(h: FilesContext) -> None:
    if h.header("x-ms-type").lower() != "file":
        raise invalid_header("x-ms-type", h.header("x-ms-type"))
    size = h.int_header("x-ms-content-length", 0, MAX_FILE_SIZE)
    if size is None:
        raise ServiceError(
            400,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
            HeaderName="x-ms-content-length",
        )
    node = h.node()
    smb = h.smb_from_request(node, is_directory=False, creating=True)
    fields = {"metadata": parse_metadata(h.sreq.headers), "content": parse_content(h.header)}
    h.store.create_file(node, size)
    h.update_entry(node, smb, **fields)
    h.respond(201, h.node_headers(node, written=True))


def _read_headers(h: FilesContext, node: Node) -> dict[str, str]:
    entry = h.store.peek_entry(node)
    return {
        **h.node_headers(node, written=False),
        **metadata_headers(entry.get("metadata", {})),
        **content_response_headers(entry.get("content", {})),
        "x-ms-type": "File",
        "Accept-Ranges": "bytes",
        "x-ms-lease-status": "unlocked",
        "x-ms-lease-state": "available",
    }


def get_file_metadata(h: FilesContext) -> None:
    node = h.node()
    h.store.require(node, directory=False)
    headers = _read_headers(h, node)
    h.respond(200, {k: v for k, v in headers.items() if k.startswith("x-ms-meta-") or k in ("ETag", "Last-Modified")})


async def get_file(h: FilesContext) -> None:
    """Get File (whole: 200, ranged: 206 with Content-Range) and Get File Properties (HEAD)."""
    node = h.node()
    size = h.store.require(node, directory=False).st_size
    headers = _read_headers(h, node)
    start, length, status = 0, size, 200
    requested = requested_range(h)
    if requested is not None and h.request.method == "GET":
        start, end = requested
        if start >= size:
            raise invalid_range(size)
        end = min(size - 1, end if end is not None else size - 1)
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers.update(_range_md5(h, node, start, length))
    h.set_status(status)
    h.apply_headers({**headers, "Content-Length": str(length)})
    await _stream(h, node, start, length)


def _range_md5(h: FilesContext, node: Node, start: int, length: int) -> dict[str, str]:
    if h.header("x-ms-range-get-content-md5").lower() != "true":
        return {}
    if length > MAX_RANGE:
        raise ServiceError(400, "OutOfRangeInput", "One of the request inputs is out of range.")
    return {"Content-MD5": md5_b64(h.store.read_range(node, start, length))}


async def _stream(h: FilesContext, node: Node, start: int, length: int) -> None:
    offset, end = start, start + length
    while h.request.method != "HEAD" and offset < end:
        chunk = h.store.read_range(node, offset, min(STREAM_CHUNK, end - offset))
        if not chunk:
            break
        h.write(chunk)
        offset += len(chunk)
        await h.flush()
    h.finish()


def delete_file(h: FilesContext) -> None:
    h.store.delete_file(h.node())
    h.respond(202)


# -- writes ---------------------------------------------------------------------------------
def put_range(h: FilesContext) -> None:
    node = h.node()
    size = h.store.require(node, directory=False).st_size
    requested = requested_range(h)
    if requested is None or requested[1] is None:
        raise invalid_header("x-ms-range", h.header("x-ms-range") or h.header("Range"))
    start, end = requested
    if end >= size:
        raise invalid_range(size)
    writers: dict[str, Callable[[FilesContext, Node, int, int], dict[str, str]]] = {
        "update": _update_range,
        "clear": _clear_range,
    }
    mode = h.header("x-ms-write").lower()
    if mode not in writers:
        raise invalid_header("x-ms-write", h.header("x-ms-write"))
    extra = writers[mode](h, node, start, end - start + 1)
    headers = h.node_headers(node, written=True)
    h.respond(201, {name: headers[name] for name in _PUT_RANGE_HEADERS} | extra)


def _update_range(h: FilesContext, node: Node, start: int, length: int) -> dict[str, str]:
    body = h.request.body
    if length > MAX_RANGE:
        raise ServiceError(
            413,
            "RequestBodyTooLarge",
            "The request body is too large and exceeds the maximum permissible limit.",
            MaxLimit=str(MAX_RANGE),
        )
    if len(body) != length:
        raise invalid_header("Content-Length", str(len(body)))
    digest = md5_b64(body)
    sent_md5 = h.header("Content-MD5")
    if sent_md5 and sent_md5 != digest:
        raise ServiceError(
            400,
            "Md5Mismatch",
            "The MD5 value specified in the request did not match with the MD5 value calculated by the server.",
            UserSpecifiedMd5=sent_md5,
            ServerCalculatedMd5=digest,
        )
    _write_keeping_time(h, node, lambda: h.store.write_range(node, start, body))
    return {"Content-MD5": digest}


def _clear_range(h: FilesContext, node: Node, start: int, length: int) -> dict[str, str]:
    if h.request.body:
        raise invalid_header("Content-Length", str(len(h.request.body)))
    _write_keeping_time(h, node, lambda: h.store.clear_range(node, start, length))
    return {}


def _write_keeping_time(h: FilesContext, node: Node, write: Callable[[], None]) -> None:
    """Write, then honour ``x-ms-file-last-write-time: preserve`` (default ``now``)."""
    before = node.stat()
    write()
    if before is not None and h.header("x-ms-file-last-write-time").lower() == "preserve":
        os.utime(node.path, ns=(before.st_atime_ns, before.st_mtime_ns))


def set_file_properties(h: FilesContext) -> None:
    """Set HTTP headers, SMB properties and (with ``x-ms-content-length``) resize."""
    node = h.node()
    h.store.require(node, directory=False)
    smb = h.smb_from_request(node, is_directory=False, creating=False)
    new_size = h.int_header("x-ms-content-length", 0, MAX_FILE_SIZE)
    if new_size is not None:
        h.store.resize(node, new_size)
    h.update_entry(node, smb, content=parse_content(h.header))
    h.respond(200, h.node_headers(node, written=True))
