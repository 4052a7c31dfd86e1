"""The request context FileREST operations run on (see :mod:`.operations`)."""

from __future__ import annotations

from typing import Any

from ..core.config import StorageAccount
from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from .errors import STORAGE_ERROR_CODES
from .model import FileStore, Node
from .properties import (
    common_headers,
    invalid_header,
    parse_smb,
    permission_key_for,
    smb_headers,
    store_smb,
)
from .request import DEFAULT_VERSION, StorageRequest
from .wire import Page, error_xml, http_date

MAX_LIST = 5000
SERVER = "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0"


class FilesContext(EmulatorHandler):
    """A FileREST request as operations see it: the account, share and path, Storage's
    dialect (headers, XML errors) and helpers to answer. :class:`.routes.FilesHandler`
    resolves, authorizes and runs the operation."""

    account: StorageAccount

    def initialize(self, state: EmulatorState) -> None:  # type: ignore[override]
        super().initialize(state)
        self.set_header("Date", http_date(state.now()))
        self.store = FileStore(state)
        self.sreq = StorageRequest(
            method=self.request.method or "",
            raw_path=self.request.path,
            raw_query=self.request.query,
            headers=[(k.lower(), v) for k, v in self.request.headers.get_all()],
            protocol=self.request.protocol,
            remote_ip=self.request.remote_ip or "",
        )

    @property
    def share(self) -> str:
        return self.sreq.share or ""

    # -- Storage's dialect -----------------------------------------------------------
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("x-ms-version", self.request.headers.get("x-ms-version") or DEFAULT_VERSION)
        self.set_header("Server", SERVER)
        if hasattr(self, "state"):
            self.set_header("Date", http_date(self.state.now()))

    def compute_etag(self) -> None:
        return None  # ETags are Azure's, never tornado's body hash

    def default_error_code(self, status: int) -> str:
        return STORAGE_ERROR_CODES.get(status, "InternalError")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        return "application/xml", error_xml(error.code, error.message, self.request_id, self.state.now(), error.extra)

    def send_service_error(self, error: ServiceError) -> None:
        error.headers.setdefault("x-ms-error-code", error.code)
        super().send_service_error(error)

    # -- every request ------------------------------------------------------------------
    def _account(self) -> StorageAccount:
        account = self.state.config.storage_account(self.sreq.account)
        if account is None:
            raise ServiceError(
                400,
                "InvalidUri",
                "The requested URI does not represent any resource on the server.",
                UriPath=self.request.full_url().split("?")[0],
            )
        return account

    # -- request and response helpers -------------------------------------------------------
    def header(self, name: str) -> str:
        return self.sreq.header(name)

    def int_header(self, name: str, low: int, high: int, default: int | None = None) -> int | None:
        raw = self.header(name)
        if not raw:
            return default
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise invalid_header(name, raw)
        return int(raw)

    def max_results(self) -> int:
        raw = self.sreq.param("maxresults")
        if raw is None:
            return MAX_LIST
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIST:
            raise ServiceError(
                400,
                "OutOfRangeQueryParameterValue",
                "One of the query parameters specified in the request URI is outside the permissible range.",
                QueryParameterName="maxresults",
                QueryParameterValue=raw,
            )
        return int(raw)

    def include(self) -> set[str]:
        return {i.strip().lower() for i in (self.sreq.param("include") or "").split(",") if i.strip()}

    def page(self, next_marker: str | None) -> Page:
        endpoint = f"{self.state.urls.get('files', '')}/{self.account.name}/"
        raw_max = self.sreq.param("maxresults")
        marker, prefix = self.sreq.param("marker"), self.sreq.param("prefix")
        return Page(endpoint, prefix, marker, int(raw_max) if raw_max else None, next_marker)

    def apply_headers(self, headers: dict[str, str]) -> None:
        for name, value in headers.items():
            if name.startswith("x-ms-meta-"):
                self._set_case_preserved(name, value)
            else:
                self.set_header(name, value)

    def _set_case_preserved(self, name: str, value: str) -> None:
        """Metadata names keep their case on the wire; tornado would Title-Case them."""
        as_list = getattr(self._headers, "_as_list", None)
        if as_list is None:  # a tornado without that internal: fall back to Title-Case
            self.set_header(name, value)
        else:
            as_list[name] = [self._convert_header_value(value)]

    def respond(self, status: int, headers: dict[str, str] | None = None, body: bytes | None = None) -> None:
        self.set_status(status)
        self.apply_headers(headers or {})
        if body is not None:
            self.set_header("Content-Type", "application/xml")
        self.finish(body)

    def policies(self) -> dict[str, dict[str, str]]:
        """The share's stored access policies, for SAS that name one (``si``)."""
        return self.store.policies(self.account.name, self.share)

    # -- files and directories ------------------------------------------------------------------
    def node(self) -> Node:
        return self.store.node(self.account.name, self.share, self.sreq.rel)

    def root_key(self, node: Node) -> str:
        return permission_key_for(f"{node.account}/{node.share}")

    def parent_key(self, node: Node) -> str:
        parent = self.store.parent(node)
        return self.store.peek_entry(parent).get("permission_key") or self.root_key(node)

    def parent_id(self, node: Node) -> str:
        parent = self.store.parent(node).stat()
        return str(parent.st_ino) if node.rel and parent else "0"

    def node_headers(self, node: Node, *, written: bool) -> dict[str, str]:
        """ETag, Last-Modified and the SMB headers of an existing file or directory."""
        st = node.stat()
        if st is None:
            raise ServiceError(404, "ResourceNotFound", "The specified resource does not exist.")
        entry = self.store.peek_entry(node)
        encrypted = "x-ms-request-server-encrypted" if written else "x-ms-server-encrypted"
        return {
            **common_headers(node, st, entry),
            **smb_headers(node, st, entry, self.parent_id(node), self.root_key(node)),
            encrypted: "true",
        }

    def smb_from_request(self, node: Node, *, is_directory: bool, creating: bool) -> dict[str, Any]:
        current = {} if creating else self.store.peek_entry(node)
        return parse_smb(
            self.header,
            self.state.now(),
            is_directory=is_directory,
            creating=creating,
            current=current,
            parent_key=self.parent_key(node),
        )

    def update_entry(self, node: Node, smb: dict[str, Any] | None = None, **fields: Any) -> None:
        """Store ``fields`` (and SMB properties) for ``node``; any change moves its change time."""
        entry = self.store.entry(node)
        entry.update(fields)
        if smb is not None:
            store_smb(entry, node, smb)
        else:
            entry["change_time"] = self.state.now()
