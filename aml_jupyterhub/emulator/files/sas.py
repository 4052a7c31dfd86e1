"""Shared access signatures for Azure Files, checked the way the service checks them.

The signature is recomputed from the string-to-sign of the version in ``sv``
over the resource the request names (so a SAS for share A used on share B
fails as "Signature did not match", as in Azure), then the time window
(``st``/``se`` against the emulator clock), protocol (``spr``), IP (``sip``),
service (``ss``), resource type (``srt``/``sr``) and permissions (``sp``).

Service SAS: ``sr=s`` (share) or ``sr=f`` (file); versions 2015-02-21 and
later. Account SAS: ``ss``/``srt``; the 2020-12-06 string-to-sign adds the
(empty) encryption scope.

Stored access policies (``si``, service SAS only): the share's policy of that
id supplies whichever of ``sp``/``st``/``se`` the SAS leaves out; a field in
both is refused with 400 ("Define a stored access policy"); an unknown id,
like a deleted policy, fails authentication, so deleting the policy revokes
every SAS bound to it. Azure may take up to 30 seconds to apply a policy
change; the emulator applies it at once. Not emulated: user-delegation SAS
(``skoid``...), refused as AuthenticationFailed.
Sources: docs/emulator-fidelity.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping

from ..core.config import StorageAccount
from .request import Operation, StorageRequest, auth_failed, not_authorized
from .wire import http_date

SERVICE_SAS_FIELDS_2015_04 = ("sip", "spr", "sv")
RESPONSE_OVERRIDES = ("rscc", "rscd", "rsce", "rscl", "rsct")


def sign(key_b64: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA256 with a base64 account key: every Storage signature."""
    digest = hmac.new(base64.b64decode(key_b64), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def is_sas(request: StorageRequest) -> bool:
    return request.param("sig") is not None


def sas_params(request: StorageRequest) -> dict[str, str]:
    return {k: v for k, v in request.query}


# -- strings to sign ------------------------------------------------------------
def service_string_to_sign(params: Mapping[str, str], canonical_resource: str) -> str:
    """Service SAS (File service); ``sip``/``spr`` joined the string in 2015-04-05."""
    fields = [params.get("sp", ""), params.get("st", ""), params.get("se", ""), canonical_resource, params.get("si", "")]
    if params.get("sv", "") >= "2015-04-05":
        fields += [params.get(name, "") for name in SERVICE_SAS_FIELDS_2015_04]
    else:
        fields.append(params.get("sv", ""))
    fields += [params.get(name, "") for name in RESPONSE_OVERRIDES]
    return "\n".join(fields)


def account_string_to_sign(account: str, params: Mapping[str, str]) -> str:
    """Account SAS; 2020-12-06 added the signed encryption scope (always empty for files)."""
    names = ("sp", "ss", "srt", "st", "se", "sip", "spr", "sv")
    fields = [account, *(params.get(name, "") for name in names)]
    if params.get("sv", "") >= "2020-12-06":
        fields.append(params.get("ses", ""))
    return "\n".join(fields) + "\n"


def canonical_resource(account: str, request: StorageRequest, signed_resource: str) -> str:
    """``/file/{account}/{share}`` for ``sr=s``; the file's full path for ``sr=f``."""
    if signed_resource == "s":
        return f"/file/{account}/{request.share}"
    return f"/file/{account}/{request.share}/{request.rel}"


# -- checks ---------------------------------------------------------------------
#: A share's stored access policies: signed identifier -> {"start", "expiry", "permission"} (ISO strings).
Policies = Mapping[str, Mapping[str, str]]
POLICY_FIELDS = {"st": "start", "se": "expiry", "sp": "permission"}


def verify_sas(account: StorageAccount, request: StorageRequest, op: Operation, now: float, policies: Policies | None = None) -> None:
    """Raise the ServiceError Azure would answer, or return if the SAS allows ``op``."""
    signed = sas_params(request)
    params = _with_policy(signed, policies or {})
    _require_supported(params)
    if "ss" in params or "srt" in params:
        string_to_sign = account_string_to_sign(account.name, params)
    else:
        _check_service_sas_target(params, request, op)
        string_to_sign = service_string_to_sign(signed, canonical_resource(account.name, request, params["sr"]))
    if not hmac.compare_digest(sign(account.key, string_to_sign), params.get("sig", "")):
        raise auth_failed(f"Signature did not match. String to sign used was {string_to_sign}")
    _check_time(params, now)
    _check_protocol_and_ip(params, request)
    if "ss" in params or "srt" in params:
        _check_account_scope(params, op)
    _check_permission(params, op)


def _with_policy(signed: dict[str, str], policies: Policies) -> dict[str, str]:
    """The SAS's fields completed from its stored access policy (``si``), if it names one."""
    identifier = signed.get("si")
    if identifier is None:
        return signed
    if "ss" in signed or "srt" in signed:
        raise auth_failed("Stored access policies are not supported for an account SAS.")
    policy = policies.get(identifier)
    if policy is None:
        raise auth_failed("Signed identifier not found on the share.")  # *unverified* detail text
    merged = dict(signed)
    for field, name in POLICY_FIELDS.items():
        if policy.get(name):
            if field in signed:
                raise auth_failed(f"Access policy field {field} is specified both in the SAS and its stored access policy.", 400)
            merged[field] = policy[name]
    return merged


def _require_supported(params: Mapping[str, str]) -> None:
    if "skoid" in params:
        raise auth_failed("User delegation SAS is not supported by the emulator.")
    if not params.get("sv") or not params.get("sp") or not params.get("se"):
        raise auth_failed("Signature fields not well formed.")
    if "ss" not in params and params.get("sr") not in ("s", "f"):
        raise auth_failed("Signature fields not well formed.")


def _check_service_sas_target(params: Mapping[str, str], request: StorageRequest, op: Operation) -> None:
    """A service SAS reaches files and directories of its share, never share or service operations."""
    if op.management or request.share is None or (params["sr"] == "f" and op.srt != "o"):
        raise not_authorized("AuthorizationResourceTypeMismatch", "resource type")


def parse_sas_time(value: str) -> dt.datetime:
    """ISO 8601 as SAS tokens carry it: a date, or a UTC time with up to 7 fractional digits."""
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        text = f"{head}.{digits[:6].ljust(6, '0')}{tail[len(digits):]}"
    moment = dt.datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _check_time(params: Mapping[str, str], now: float) -> None:
    try:
        expiry = parse_sas_time(params["se"]).timestamp()
        start = parse_sas_time(params["st"]).timestamp() if params.get("st") else None
    except ValueError as e:
        raise auth_failed("Signature fields not well formed.") from e
    if now >= expiry or (start is not None and now < start):
        shown_start = http_date(start) if start is not None else ""
        raise auth_failed(
            f"Signature not valid in the specified time frame: Start [{shown_start}] - "
            f"Expiry [{http_date(expiry)}] - Current [{http_date(now)}]"
        )


def _check_protocol_and_ip(params: Mapping[str, str], request: StorageRequest) -> None:
    protocols = {p.strip() for p in params.get("spr", "https,http").split(",")}
    if request.protocol not in protocols:
        raise not_authorized("AuthorizationProtocolMismatch", "protocol")
    if params.get("sip") and not _ip_allowed(params["sip"], request.remote_ip):
        raise not_authorized("AuthorizationSourceIPMismatch", "source IP " + request.remote_ip)


def _ip_allowed(allowed: str, remote: str) -> bool:
    low, _, high = allowed.partition("-")
    try:
        address = ipaddress.ip_address(remote)
        return ipaddress.ip_address(low) <= address <= ipaddress.ip_address(high or low)
    except ValueError:
        return False


def _check_account_scope(params: Mapping[str, str], op: Operation) -> None:
    if "f" not in params.get("ss", ""):
        raise not_authorized("AuthorizationServiceMismatch", "service")
    if op.srt not in params.get("srt", ""):
        raise not_authorized("AuthorizationResourceTypeMismatch", "resource type")


def _check_permission(params: Mapping[str, str], op: Operation) -> None:
    if not set(op.sas) & set(params.get("sp", "")):
        raise not_authorized("AuthorizationPermissionMismatch", "permission")
