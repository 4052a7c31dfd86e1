"""FileREST Rename File and Rename Directory (``PUT <target>?comp=rename``, version 2021-04-10+).

The request names the *target*; ``x-ms-file-rename-source`` carries the full
URL of the source (the SDKs send the source client's URL, so with SAS it
carries the SAS too). Both must be in the same share. Properties sent with
the request (metadata, content type, SMB attributes and times) replace the
source's; absent ones are kept. Answers 200 with the target's headers.

Authorization (*unverified* beyond the reference, which says only the account
owner may rename): the request's own credential must allow a write on the
target; a SAS on the source URL must verify for the source and allow
deleting it; a request by a file-scoped SAS (``sr=f``) without its own SAS
on the source is refused, since that SAS does not reach the source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..core.handlers import ServiceError
from .model import Node
from .properties import invalid_header, parse_content, parse_metadata
from .request import Operation, StorageRequest, not_authorized
from .sas import is_sas, verify_sas

if TYPE_CHECKING:
    from .context import FilesContext

MAX_SOURCE = 2048
SOURCE_HEADER = "x-ms-file-rename-source"
#: What a SAS on the source must allow: the source goes away (*unverified*).
SOURCE_OP = Operation("RenameSource", "d", "o", ())


def _missing_source() -> ServiceError:
    return ServiceError(
        400,
        "MissingRequiredHeader",
        "An HTTP header that's mandatory for this request is not specified.",
        HeaderName=SOURCE_HEADER,
    )


def source_request(h: FilesContext) -> StorageRequest:
    """The source URL as a request of its own: account, share, path and its SAS, if any."""
    raw = h.header(SOURCE_HEADER)
    if not raw:
        raise _missing_source()
    parts = urlsplit(raw)
    if len(raw) > MAX_SOURCE or not parts.path.startswith("/"):
        raise invalid_header(SOURCE_HEADER, raw.split("?")[0])
    source = StorageRequest(
        method="DELETE",
        raw_path=parts.path,
        raw_query=parts.query,
        headers=[],
        protocol=h.sreq.protocol,
        remote_ip=h.sreq.remote_ip,
    )
    if source.account != h.account.name or source.share != h.share:
        raise invalid_header(SOURCE_HEADER, parts.path)  # another share: not a rename (*unverified* code)
    return source


def _authorize_source(h: FilesContext, source: StorageRequest) -> None:
    if is_sas(source):
        verify_sas(h.account, source, SOURCE_OP, h.state.now(), h.policies())
    elif is_sas(h.sreq) and h.sreq.param("sr") == "f":
        raise not_authorized("AuthorizationResourceTypeMismatch", "resource type")


def _truthy(h: FilesContext, name: str) -> bool:
    value = h.header(name).lower()
    if value not in ("", "true", "false"):
        raise invalid_header(name, h.header(name))
    return value == "true"


def rename(h: FilesContext, *, directory: bool) -> None:
    source = source_request(h)
    _authorize_source(h, source)
    replace = _truthy(h, "x-ms-file-rename-replace-if-exists")
    if _truthy(h, "x-ms-file-rename-ignore-readonly") and not replace:
        raise invalid_header("x-ms-file-rename-ignore-readonly", "true")
    source_node = h.store.node(h.account.name, h.share, source.rel)
    target = h.node()
    h.smb_from_request(source_node, is_directory=directory, creating=False)  # refuse bad headers before moving
    h.store.rename(source_node, target, directory=directory, replace=replace)
    _apply_properties(h, target, h.smb_from_request(target, is_directory=directory, creating=False))
    h.respond(200, h.node_headers(target, written=True))


def _apply_properties(h: FilesContext, target: Node, smb: dict) -> None:
    fields = {}
    if any(name.startswith("x-ms-meta-") for name, _ in h.sreq.headers):
        fields["metadata"] = parse_metadata(h.sreq.headers)
    if h.header("x-ms-content-type"):
        content = dict(h.store.peek_entry(target).get("content", {}))
        content["type"] = parse_content(h.header)["type"]
        fields["content"] = content
    h.update_entry(target, smb, **fields)

