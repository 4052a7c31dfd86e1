"""Azure Storage wire formats: error bodies, listing XML and timestamps.

Only formatting lives here; what to list and which error to raise is decided
by :mod:`aml_jupyterhub.emulator.files.routes` and :mod:`aml_jupyterhub.emulator.files.auth`.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from xml.sax.saxutils import escape, quoteattr

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


# -- timestamps ---------------------------------------------------------------
def http_date(ts: float) -> str:
    """RFC 1123, as in ``Date`` and ``Last-Modified``: ``Mon, 01 Jan 2024 00:00:00 GMT``."""
    return formatdate(ts, usegmt=True)


def file_time(ts: float) -> str:
    """SMB property times as Azure Files sends them: ISO 8601 with 7 fractional digits."""
    moment = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


# -- errors -------------------------------------------------------------------
def error_xml(code: str, message: str, request_id: str, now: float, details: Mapping[str, Any]) -> bytes:
    """``<Error><Code/><Message/>...`` with Azure's ``RequestId``/``Time`` message suffix."""
    full_message = f"{message}\nRequestId:{request_id}\nTime:{file_time(now)}"
    extra = "".join(_element(name, value) for name, value in details.items())
    body = f"{XML_DECLARATION}<Error>{_element('Code', code)}{_element('Message', full_message)}{extra}</Error>"
    return body.encode("utf-8")


def _element(name: str, value: Any) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _metadata_xml(metadata: Mapping[str, str]) -> str:
    return "<Metadata>" + "".join(_element(k, v) for k, v in metadata.items()) + "</Metadata>"


def _properties_xml(properties: Mapping[str, Any]) -> str:
    return "<Properties>" + "".join(_element(k, v) for k, v in properties.items() if v is not None) + "</Properties>"


# -- listings -----------------------------------------------------------------
@dataclass
class Page:
    """One page of a listing, with the request's paging parameters echoed back."""

    service_endpoint: str
    prefix: str | None
    marker: str | None
    max_results: int | None
    next_marker: str | None

    def header_xml(self) -> str:
        parts = [
            _element("Prefix", self.prefix) if self.prefix else "",
            _element("Marker", self.marker) if self.marker else "",
            _element("MaxResults", self.max_results) if self.max_results else "",
        ]
        return "".join(parts)

    def footer_xml(self) -> str:
        return _element("NextMarker", self.next_marker or "")


def paginate(names: list[str], marker: str | None, max_results: int) -> tuple[list[str], str | None]:
    """One page of sorted ``names`` from ``marker`` on, and the marker of the next page."""
    start = bisect.bisect_left(names, marker) if marker else 0
    rest = names[start + max_results :]
    return names[start : start + max_results], (rest[0] if rest else None)


@dataclass
class ShareItem:
    name: str
    properties: dict[str, Any]
    metadata: dict[str, str] | None = None  # None: not asked for (include=metadata)


def share_list_xml(page: Page, shares: Iterable[ShareItem]) -> bytes:
    """The List Shares body."""
    items = "".join(
        "<Share>"
        + _element("Name", s.name)
        + _properties_xml(s.properties)
        + (_metadata_xml(s.metadata) if s.metadata is not None else "")
        + "</Share>"
        for s in shares
    )
    body = (
        f"{XML_DECLARATION}<EnumerationResults ServiceEndpoint={quoteattr(page.service_endpoint)}>"
        f"{page.header_xml()}<Shares>{items}</Shares>{page.footer_xml()}</EnumerationResults>"
    )
    return body.encode("utf-8")


@dataclass
class DirectoryEntry:
    name: str
    is_directory: bool
    file_id: str
    properties: dict[str, Any] = field(default_factory=dict)
    attributes: str | None = None
    permission_key: str | None = None


def _entry_xml(entry: DirectoryEntry) -> str:
    tag = "Directory" if entry.is_directory else "File"
    optional = [
        _element("Attributes", entry.attributes) if entry.attributes else "",
        _element("PermissionKey", entry.permission_key) if entry.permission_key else "",
    ]
    return (
        f"<{tag}>{_element('FileId', entry.file_id)}{_element('Name', entry.name)}"
        f"{_properties_xml(entry.properties)}{''.join(optional)}</{tag}>"
    )


def directory_list_xml(page: Page, share: str, directory_path: str, directory_id: str, entries: Iterable[DirectoryEntry]) -> bytes:
    """The List Directories and Files body."""
    body = (
        f"{XML_DECLARATION}<EnumerationResults ServiceEndpoint={quoteattr(page.service_endpoint)} "
        f"ShareName={quoteattr(share)} DirectoryPath={quoteattr(directory_path)}>"
        f"{page.header_xml()}{_element('DirectoryId', directory_id)}"
        f"<Entries>{''.join(_entry_xml(e) for e in entries)}</Entries>{page.footer_xml()}</EnumerationResults>"
    )
    return body.encode("utf-8")


def share_stats_xml(usage_bytes: int) -> bytes:
    """The Get Share Stats body."""
    body = f"{XML_DECLARATION}<ShareStats>{_element('ShareUsageBytes', usage_bytes)}</ShareStats>"
    return body.encode("utf-8")


# -- stored access policies (Get/Set Share ACL) -----------------------------------------------
def signed_identifiers_xml(policies: Mapping[str, Mapping[str, str]]) -> bytes:
    """The Get Share ACL body: ``<SignedIdentifiers>`` with each policy's set fields."""
    names = (("start", "Start"), ("expiry", "Expiry"), ("permission", "Permission"))
    items = "".join(
        "<SignedIdentifier>"
        + _element("Id", identifier)
        + "<AccessPolicy>"
        + "".join(_element(tag, policy[key]) for key, tag in names if policy.get(key))
        + "</AccessPolicy></SignedIdentifier>"
        for identifier, policy in policies.items()
    )
    return f"{XML_DECLARATION}<SignedIdentifiers>{items}</SignedIdentifiers>".encode("utf-8")
