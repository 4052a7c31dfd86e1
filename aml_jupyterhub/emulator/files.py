"""Azure Files (the FileREST data plane) on its own HTTPS port.

URLs are path-style, as the SDK builds them for a loopback host:
``https://127.0.0.1:PORT/{account}[/{share}[/{path}]]``. :mod:`.files_routes`
names the operation (method, path depth, ``restype``/``comp``); every request
is authorized by Shared Key, SAS or bearer token (:mod:`.storage_auth`)
before the operation runs (:mod:`.share_ops`, :mod:`.directory_ops`,
:mod:`.file_ops`). Answers speak Storage's dialect: XML errors with
``x-ms-error-code``, and ``x-ms-request-id``, ``x-ms-version`` and ``Date``
on every response.

Share records live in ``state.section("shares")``; file bytes under
``state.files_root/{account}/{share}/`` (:mod:`.file_store`), so a mounted
view of that directory and REST see the same bytes.

Deviations from Azure Files, each deliberate:

- An unknown account answers ``400 InvalidUri``: in Azure the account's host
  name simply does not resolve, which one loopback address cannot show.
- Paths are case-sensitive (Azure Files is case-insensitive, case-preserving);
  metadata names arrive lower-cased (HTTP header names reach the emulator
  normalised) and are stored and returned that way.
- Share usage counts file lengths (sparse files included) and the quota is
  enforced when a file is created or resized: a file that would take the share
  past its quota is refused with ``403 ShareSizeLimitReached``.
- Shared Key failures do not echo the caller's signature (Azure does).
- Not emulated: snapshots, leases, copy, handles, rename, range lists,
  Create/Get Permission, service properties, NFS, conditional headers, stored
  access policies and user-delegation SAS.
- Bearer tokens: :mod:`.storage_rbac` documents what Azure does (share
  management by OAuth needs version 2024-11-04 and a management role; the
  Privileged data roles do not include one) and the emulator does the same.
"""

from __future__ import annotations

from typing import Any

from .config import StorageAccount
from .file_properties import common_headers, invalid_header, parse_smb, permission_key_for, smb_headers, store_smb
from .file_store import FileStore, Node
from .files_control import control_routes
from .files_routes import Route, find_route
from .handlers import EmulatorHandler, ServiceError
from .state import EmulatorState
from .storage_auth import authorize
from .storage_request import DEFAULT_VERSION, StorageRequest
from .storage_xml import Page, error_xml, http_date

MAX_LIST = 5000
SERVER = "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0"
#: Storage's error codes for statuses raised without one (injected faults, tornado errors).
STORAGE_ERROR_CODES = {
    400: "InvalidInput",
    401: "InvalidAuthenticationInfo",
    403: "AuthorizationFailure",
    404: "ResourceNotFound",
    405: "UnsupportedHttpVerb",
    409: "ResourceAlreadyExists",
    412: "ConditionNotMet",
    413: "RequestBodyTooLarge",
    416: "InvalidRange",
    429: "ServerBusy",
    503: "ServerBusy",
}

__all__ = ["FilesHandler", "control_routes", "on_start", "routes"]


class FilesHandler(EmulatorHandler):
    """Every FileREST request: :meth:`prepare` resolves and authorizes, then the route runs."""

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
        self.target: Route | None = find_route(self.sreq)

    @property
    def route(self) -> str:
        target = getattr(self, "target", None)
        return target.op.name if target else type(self).__name__

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
    async def prepare(self) -> None:
        await super().prepare()  # injected faults first, as for every service
        if self._finished:
            return
        self.account: StorageAccount = self._account()
        if self.target is None:
            raise ServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        self.principal = authorize(self.state, self.account, self.sreq, self.target.op)

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

    async def _run(self) -> None:
        assert self.target is not None
        result = self.target.run(self)
        if result is not None:
            await result

    get = put = head = delete = _run  # type: ignore[assignment]

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


def routes(state: EmulatorState) -> list:
    return [(r"/.*", FilesHandler, {"state": state})]


def on_start(state: EmulatorState) -> None:
    """Empty the shares' bytes whenever the emulator state is reset."""
    state.reset_hooks.append(FileStore(state).reset)
