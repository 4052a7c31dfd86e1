"""What the Azure Files authorizers need to know about a request and its operation.

:class:`Operation` describes one FileREST operation the way Azure authorizes
it (SAS permission letters, account-SAS resource type, RBAC actions);
:class:`StorageRequest` is a transport-neutral view of the HTTP request. The
authorizers (:mod:`aml_jupyterhub.emulator.files.auth`, :mod:`aml_jupyterhub.emulator.files.sas`, :mod:`aml_jupyterhub.emulator.files.rbac`)
depend on these two only, not on tornado.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

from ..core.handlers import ServiceError

#: The newest service version the emulator speaks (the SDK 12.27's default).
DEFAULT_VERSION = "2026-10-06"


@dataclass(frozen=True)
class Operation:
    """One FileREST operation, as the authorizers see it.

    ``sas`` lists the SAS permission letters of which any one allows it;
    ``srt`` is the account-SAS resource type (``s`` service, ``c`` container
    = share, ``o`` object = file or directory); ``actions`` are the RBAC
    (data) actions a bearer caller needs, all of them. ``management`` marks
    the share/service management operations (no service SAS; bearer only
    from version 2024-11-04); ``backup`` marks file data operations, which a
    bearer caller must send with ``x-ms-file-request-intent: backup``.
    """

    name: str
    sas: str
    srt: str
    actions: tuple[str, ...]
    management: bool = False

    @property
    def backup(self) -> bool:
        return not self.management


@dataclass
class StorageRequest:
    """A request to the files endpoint: ``/{account}[/{share}[/{path}]]``."""

    method: str
    raw_path: str  # exactly as on the wire (still %-encoded)
    raw_query: str
    headers: list[tuple[str, str]]  # (lower-case name, value), in arrival order
    protocol: str
    remote_ip: str
    account: str = field(init=False)
    share: str | None = field(init=False)  # None: an account-level request
    rel: str = field(init=False)  # the %-decoded path inside the share ("" for its root)
    query: list[tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        segments = [unquote(s) for s in self.raw_path.split("/")[1:]]
        self.account = segments[0] if segments else ""
        self.share = segments[1] if len(segments) > 1 and segments[1] else None
        self.rel = "/".join(s for s in segments[2:] if s)
        self.query = query_pairs(self.raw_query)

    def header(self, name: str, default: str = "") -> str:
        """All values of header ``name`` joined by commas, or ``default``."""
        values = [v for k, v in self.headers if k == name.lower()]
        return ",".join(values) if values else default

    def has_header(self, name: str) -> bool:
        return any(k == name.lower() for k, _ in self.headers)

    def param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name`` (case-insensitive)."""
        return next((v for k, v in self.query if k.lower() == name.lower()), default)

    @property
    def version(self) -> str:
        return self.header("x-ms-version") or self.param("sv") or DEFAULT_VERSION


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode ``a=1&b=%2B`` without turning ``+`` into a space (as Storage signs it)."""
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def grouped(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Values by lower-cased name, in arrival order."""
    groups: dict[str, list[str]] = {}
    for name, value in pairs:
        groups.setdefault(name.lower(), []).append(value)
    return groups


def auth_failed(detail: str, status: int = 403) -> ServiceError:
    """Azure's AuthenticationFailed, with the reason in ``AuthenticationErrorDetail``."""
    return ServiceError(
        status,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
        "correctly including the signature.",
        AuthenticationErrorDetail=detail,
    )


def not_authorized(code: str, what: str) -> ServiceError:
    """403 ``Authorization*Mismatch``: ``what`` is permission, resource type, service, protocol..."""
    return ServiceError(403, code, f"This request is not authorized to perform this operation using this {what}.")
