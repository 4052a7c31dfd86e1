"""Who may do what on the files endpoint: Shared Key, SAS or bearer, each checked for real.

:func:`authorize` picks the scheme from the request (``Authorization:
SharedKey``, ``Authorization: Bearer`` or a ``sig`` query parameter) and
returns the principal for the request log: ``sharedkey:<account>``,
``sas:<account>`` or the bearer caller's UPN (app id for an application).
Failures raise the :class:`~aml_jupyterhub.emulator.core.handlers.ServiceError` Azure would answer.

Shared Key follows "Authorize with Shared Key" for the File service (version
2015-02-21 and later): the verb, eleven standard headers (``Content-Length``
empty when 0, ``Date`` empty when ``x-ms-date`` is sent), the ``x-ms-*``
headers in the service's sort order and the canonicalized resource
``/{account}{encoded path}`` plus each query parameter on its own line. The
request date must be within 15 minutes of the emulator clock. Neither keys
nor signatures are logged or echoed.
"""

from __future__ import annotations

import datetime as dt
import hmac
from email.utils import parsedate_to_datetime

from ..core.config import StorageAccount
from ..core.state import EmulatorState
from .model import FileStore
from .rbac import authorize_bearer, no_credentials
from .request import Operation, StorageRequest, auth_failed, grouped
from .sas import is_sas, sign, verify_sas

STANDARD_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
MAX_CLOCK_SKEW = 15 * 60

# The service sorts x-ms-* header names like .NET's culture-aware compare:
# '-' and "'" are ignored, punctuation sorts before digits before letters.
_SORT_ORDER = "!#$%&*.^_`|~+0123456789abcdefghijklmnopqrstuvwxyz"
_IGNORED = "-'"


def header_sort_key(name: str) -> tuple[tuple[int, ...], str]:
    weights = tuple(_SORT_ORDER.find(c) for c in name if c not in _IGNORED)
    return weights, name


def authorize(state: EmulatorState, account: StorageAccount, request: StorageRequest, op: Operation) -> str:
    """Check the request's credentials for ``op``; returns the principal for the request log."""
    authorization = request.header("Authorization")
    scheme = authorization.split(" ", 1)[0].lower()
    if scheme == "sharedkey":
        verify_shared_key(state, account, request)
        return f"sharedkey:{account.name}"
    if scheme == "bearer":
        caller = authorize_bearer(state, account, request, op)
        return caller.name or caller.oid
    if authorization:
        raise auth_failed(f"Authentication scheme {authorization.split(' ', 1)[0]} is not supported.")
    if is_sas(request):
        policies = FileStore(state).policies(account.name, request.share or "")
        verify_sas(account, request, op, state.now(), policies)
        return f"sas:{account.name}"
    raise no_credentials(state)


# -- Shared Key -------------------------------------------------------------------
def shared_key_string_to_sign(account: str, request: StorageRequest) -> str:
    return (
        request.method
        + "\n"
        + _standard_headers(request)
        + _canonical_headers(request)
        + _canonical_resource(account, request)
    )


def _standard_headers(request: StorageRequest) -> str:
    values = []
    for name in STANDARD_HEADERS:
        value = request.header(name)
        if name == "content-length" and value == "0":
            value = ""
        if name == "date" and request.has_header("x-ms-date"):
            value = ""
        values.append(value + "\n")
    return "".join(values)


def _canonical_headers(request: StorageRequest) -> str:
    groups = grouped((k, v) for k, v in request.headers if k.startswith("x-ms-"))
    names = sorted(groups, key=header_sort_key)
    return "".join(f"{name}:{','.join(v.strip() for v in groups[name])}\n" for name in names)


def _canonical_resource(account: str, request: StorageRequest) -> str:
    groups = grouped(request.query)
    lines = [f"\n{name}:{','.join(sorted(groups[name]))}" for name in sorted(groups)]
    return f"/{account}{request.raw_path}" + "".join(lines)


def verify_shared_key(state: EmulatorState, account: StorageAccount, request: StorageRequest) -> None:
    """Check ``Authorization: SharedKey <account>:<signature>`` and the request date."""
    _scheme, _, credentials = request.header("Authorization").partition(" ")
    name, _, signature = credentials.strip().partition(":")
    if name != account.name or not signature:
        raise auth_failed("The account name in the Authorization header does not match the account in the URI.")
    _check_request_date(state, request)
    string_to_sign = shared_key_string_to_sign(account.name, request)
    if not hmac.compare_digest(sign(account.key, string_to_sign), signature):
        raise auth_failed(
            "The MAC signature found in the HTTP request is not the same as any computed signature. "
            f"Server used following string to sign: '{string_to_sign}'."
        )


def _check_request_date(state: EmulatorState, request: StorageRequest) -> None:
    raw = request.header("x-ms-date") or request.header("Date")
    if not raw:
        raise auth_failed("Request date header not specified")
    try:
        sent = parsedate_to_datetime(raw).astimezone(dt.timezone.utc).timestamp()
    except (TypeError, ValueError) as e:
        raise auth_failed("Request date header not well formed") from e
    if abs(state.now() - sent) > MAX_CLOCK_SKEW:
        raise auth_failed("Request date header too old: " + raw)
