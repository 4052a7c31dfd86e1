"""Properties of emulated files and directories: parsed from request headers, echoed as Azure does.

Covers metadata (``x-ms-meta-*``), content headers (``x-ms-content-*`` in,
``Content-*`` out) and the SMB properties the SDK sends on create and set
properties: attributes, permission (key), creation/last-write/change times.
Last-write time is the file's mtime on disk, so writes through a mounted view
show up; the other properties live in the store's per-path entry.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat as stat_mod
from collections.abc import Callable, Mapping
from typing import Any

from ..core.handlers import ServiceError
from .model import Node, etag_for
from .wire import file_time, http_date

Headers = Callable[[str], str]  # name -> value ("" when absent)

ATTRIBUTES = (
    "ReadOnly",
    "Hidden",
    "System",
    "None",
    "Directory",
    "Archive",
    "Temporary",
    "Offline",
    "NotContentIndexed",
    "NoScrubData",
)
_ATTRIBUTE_NAMES = {a.lower(): a for a in ATTRIBUTES}
CONTENT_HEADERS = {  # stored key -> (request header, response header)
    "type": ("x-ms-content-type", "Content-Type"),
    "encoding": ("x-ms-content-encoding", "Content-Encoding"),
    "language": ("x-ms-content-language", "Content-Language"),
    "cache_control": ("x-ms-cache-control", "Cache-Control"),
    "disposition": ("x-ms-content-disposition", "Content-Disposition"),
    "md5": ("x-ms-content-md5", "Content-MD5"),
}
_METADATA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def invalid_header(name: str, value: str) -> ServiceError:
    return ServiceError(
        400,
        "InvalidHeaderValue",
        "The value for one of the HTTP headers is not in the correct format.",
        HeaderName=name,
        HeaderValue=value,
    )


# -- metadata -----------------------------------------------------------------------
def parse_metadata(headers: list[tuple[str, str]]) -> dict[str, str]:
    """``x-ms-meta-*`` request headers (names arrive lower-cased) as a dict."""
    metadata: dict[str, str] = {}
    for name, value in headers:
        if not name.startswith("x-ms-meta-"):
            continue
        key = name[len("x-ms-meta-") :]
        if not _METADATA_NAME.match(key):
            raise ServiceError(400, "InvalidMetadata", "The metadata specified is invalid. It has characters that are not permitted.")
        metadata[key] = value
    return metadata


def metadata_headers(metadata: Mapping[str, str]) -> dict[str, str]:
    return {f"x-ms-meta-{k}": v for k, v in metadata.items()}


# -- content headers ------------------------------------------------------------------
def parse_content(header: Headers) -> dict[str, str]:
    """The content headers of a Create File / Set File Properties request (absent ones are cleared)."""
    return {key: header(request_name) for key, (request_name, _) in CONTENT_HEADERS.items() if header(request_name)}


def content_response_headers(content: Mapping[str, str]) -> dict[str, str]:
    headers = {response_name: content[key] for key, (_, response_name) in CONTENT_HEADERS.items() if content.get(key)}
    headers.setdefault("Content-Type", "application/octet-stream")
    return headers


# -- SMB properties -------------------------------------------------------------------
def parse_attributes(value: str, is_directory: bool) -> str:
    """Validate ``x-ms-file-attributes`` and normalise it as Azure echoes it."""
    names = []
    for token in filter(None, (t.strip() for t in value.split("|"))):
        name = _ATTRIBUTE_NAMES.get(token.lower())
        if name is None:
            raise invalid_header("x-ms-file-attributes", value)
        if name != "None":
            names.append(name)
    if is_directory and "Directory" not in names:
        names.insert(0, "Directory")
    if not names:
        names = ["Archive"]
    return " | ".join(names)


def parse_file_time(name: str, value: str, now: float, current: float | None) -> float:
    """``now``, ``preserve`` or an ISO 8601 UTC time with up to 7 fractional digits."""
    lowered = value.lower()
    if lowered == "now":
        return now
    if lowered == "preserve":
        return current if current is not None else now
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,7}))?Z", value)
    if not match:
        raise invalid_header(name, value)
    moment = dt.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    fraction = int((match.group(2) or "0").ljust(7, "0")) / 1e7
    return moment.timestamp() + fraction


def permission_key_for(text: str) -> str:
    """A stable key in Azure's ``<number>*<number>`` shape for a permission (SDDL) or a share root."""
    digest = hashlib.sha256(text.encode()).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**19}*{int.from_bytes(digest[8:16], 'big') % 10**19}"


def parse_smb(header: Headers, now: float, *, is_directory: bool, creating: bool, current: Mapping[str, Any], parent_key: str) -> dict[str, Any]:
    """The SMB properties a create or set-properties request carries (defaults when creating).

    Returns the entry fields to store; ``last_write_time`` (when an explicit
    time was sent) is for the caller to apply to the file's mtime.
    """
    props: dict[str, Any] = {}
    attributes = header("x-ms-file-attributes")
    if attributes or creating:
        props["attributes"] = parse_attributes(attributes or "None", is_directory)
    for field in ("creation", "change"):
        name = f"x-ms-file-{field}-time"
        if header(name) or creating:
            props[f"{field}_time"] = parse_file_time(name, header(name) or "now", now, current.get(f"{field}_time"))
    props.setdefault("change_time", now)
    last_write = header("x-ms-file-last-write-time")
    if last_write and last_write.lower() not in ("now", "preserve"):
        props["last_write_time"] = parse_file_time("x-ms-file-last-write-time", last_write, now, None)
    key = _permission_key(header, creating, parent_key)
    if key:
        props["permission_key"] = key
    return props


def store_smb(entry: dict[str, Any], node: Node, props: Mapping[str, Any]) -> None:
    """Keep ``props`` in the entry; an explicit last-write time becomes the file's mtime."""
    entry.update({k: v for k, v in props.items() if k != "last_write_time"})
    if "last_write_time" in props:
        os.utime(node.path, (props["last_write_time"], props["last_write_time"]))


def _permission_key(header: Headers, creating: bool, parent_key: str) -> str | None:
    permission, key = header("x-ms-file-permission"), header("x-ms-file-permission-key")
    if permission and key:
        raise invalid_header("x-ms-file-permission", permission)
    if key:
        return key
    if permission and permission.lower() != "inherit":
        return permission_key_for(permission)
    if creating or permission:
        return parent_key
    return None


def node_etag(node: Node, st: os.stat_result, entry: Mapping[str, Any]) -> str:
    return etag_for(node.rel, st.st_mtime_ns, st.st_size, entry.get("change_time"), sorted(entry.get("metadata", {}).items()))


def last_modified(st: os.stat_result, entry: Mapping[str, Any]) -> float:
    return max(st.st_mtime, entry.get("change_time", 0.0))


def file_id(node: Node, st: os.stat_result) -> str:
    return str(st.st_ino)


def smb_headers(node: Node, st: os.stat_result, entry: Mapping[str, Any], parent_id: str, default_key: str) -> dict[str, str]:
    """The ``x-ms-file-*`` response headers of a file or directory."""
    changed = entry.get("change_time", st.st_ctime)
    return {
        "x-ms-file-attributes": entry.get("attributes") or parse_attributes("None", stat_is_dir(st)),
        "x-ms-file-creation-time": file_time(entry.get("creation_time", st.st_mtime)),
        "x-ms-file-last-write-time": file_time(st.st_mtime),
        "x-ms-file-change-time": file_time(changed),
        "x-ms-file-permission-key": entry.get("permission_key") or default_key,
        "x-ms-file-id": file_id(node, st),
        "x-ms-file-parent-id": parent_id,
    }


def stat_is_dir(st: os.stat_result) -> bool:
    return stat_mod.S_ISDIR(st.st_mode)


def common_headers(node: Node, st: os.stat_result, entry: Mapping[str, Any]) -> dict[str, str]:
    """ETag and Last-Modified of a file or directory."""
    return {"ETag": node_etag(node, st, entry), "Last-Modified": http_date(last_modified(st, entry))}


def listing_properties(st: os.stat_result, entry: Mapping[str, Any], node: Node, include: set[str]) -> dict[str, Any]:
    """The ``<Properties>`` of one listed entry, as much as ``include`` asks for."""
    props: dict[str, Any] = {}
    if not stat_is_dir(st):
        props["Content-Length"] = st.st_size
    if "timestamps" in include:
        props["CreationTime"] = file_time(entry.get("creation_time", st.st_mtime))
        props["LastAccessTime"] = file_time(st.st_atime)
        props["LastWriteTime"] = file_time(st.st_mtime)
        props["ChangeTime"] = file_time(entry.get("change_time", st.st_ctime))
        props["Last-Modified"] = http_date(last_modified(st, entry))
    if "etag" in include:
        props["Etag"] = node_etag(node, st, entry)
    return props
