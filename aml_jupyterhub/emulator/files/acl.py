"""Get Share ACL and Set Share ACL (``?restype=share&comp=acl``): a share's stored access policies.

Set replaces the whole list with the body's ``<SignedIdentifiers>`` (an empty
body removes every policy); at most five, each with a unique ``Id`` of up to
64 characters and optional ``Start``, ``Expiry`` (ISO 8601 UTC) and
``Permission`` (letters of ``rcwdl``, in that order). Times are echoed as
Azure does, with seven fractional digits. A service SAS naming a policy
(``si``) takes the fields it leaves out from it (:mod:`.sas`). Error codes for
a sixth policy, a long id or a bad permission are *unverified* (400
``InvalidXmlDocument`` / ``InvalidXmlNodeValue``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from ..core.handlers import ServiceError
from .sas import parse_sas_time
from .share_ops import share_headers
from .wire import file_time, signed_identifiers_xml

if TYPE_CHECKING:
    from .context import FilesContext

MAX_POLICIES = 5
MAX_ID = 64
PERMISSION_ORDER = "rcwdl"
_FIELDS = (("Start", "start"), ("Expiry", "expiry"), ("Permission", "permission"))


def _bad_document() -> ServiceError:
    return ServiceError(400, "InvalidXmlDocument", "XML specified is not syntactically valid.")


def _bad_value(node: str, value: str) -> ServiceError:
    return ServiceError(
        400, "InvalidXmlNodeValue", "The value for one of the XML nodes is not in the correct format.", XmlNodeName=node, XmlNodeValue=value
    )


def _field(name: str, value: str) -> str:
    if name in ("start", "expiry"):
        try:
            return file_time(parse_sas_time(value).timestamp())
        except ValueError:
            raise _bad_value(name.capitalize(), value) from None
    if not value or any(c not in PERMISSION_ORDER for c in value) or len(set(value)) != len(value):
        raise _bad_value("Permission", value)
    return "".join(c for c in PERMISSION_ORDER if c in value)


def parse_signed_identifiers(body: bytes) -> dict[str, dict[str, str]]:
    """The policies of a Set Share ACL body, validated; raises Azure's 400s."""
    if not body.strip():
        return {}
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise _bad_document() from None
    if root.tag != "SignedIdentifiers":
        raise _bad_document()
    policies: dict[str, dict[str, str]] = {}
    for item in root.findall("SignedIdentifier"):
        identifier = (item.findtext("Id") or "").strip()
        if not identifier or len(identifier) > MAX_ID or identifier in policies:
            raise _bad_value("Id", identifier[:MAX_ID])
        access = item.find("AccessPolicy")
        policy = {}
        for tag, name in _FIELDS:
            text = (access.findtext(tag) if access is not None else None) or ""
            if text.strip():
                policy[name] = _field(name, text.strip())
        policies[identifier] = policy
    if len(policies) > MAX_POLICIES:
        raise _bad_document()
    return policies


def get_share_acl(h: FilesContext) -> None:
    record = h.store.share(h.account.name, h.share)
    h.respond(200, share_headers(record), signed_identifiers_xml(h.store.policies(h.account.name, h.share)))


def set_share_acl(h: FilesContext) -> None:
    h.store.share(h.account.name, h.share)
    record = h.store.set_policies(h.account.name, h.share, parse_signed_identifiers(h.request.body))
    h.respond(200, share_headers(record))
