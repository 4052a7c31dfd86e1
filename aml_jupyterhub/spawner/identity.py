"""What the hub recorded about each compute instance it created, and the checks against that record.

An instance proves itself to the hub with a managed-identity token
(docs/token-broker.md). The hub trusts it only if everything matches what it
created and read back from ARM: the identity's object id (``identity.principalId``),
its tenant, the compute's resource id, and ``createdOn``, which a deleted and
re-created instance of the same name cannot repeat (its identity is new too).
Pure functions, tested without Azure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from .snapshots import ComputeSnapshot


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as the hub saw it right after creating it."""

    name: str
    principal_id: str = ""
    tenant_id: str = ""
    created_on: str = ""

    @classmethod
    def of(cls, snapshot: ComputeSnapshot) -> InstanceRecord:
        return cls(snapshot.name, snapshot.principal_id, snapshot.identity_tenant, snapshot.created_on)

    @classmethod
    def from_json(cls, name: str, raw: Mapping[str, Any]) -> InstanceRecord:
        return cls(name, str(raw.get("principal_id", "")), str(raw.get("tenant_id", "")), str(raw.get("created_on", "")))

    def as_json(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if k != "name"}

    @property
    def complete(self) -> bool:
        """Azure may fill the identity a little after create (*unverified*); until then nothing is trusted."""
        return bool(self.principal_id and self.created_on)

    def completed_by(self, snapshot: ComputeSnapshot) -> InstanceRecord:
        """The record with what a later read of the same instance adds (never overwrites a value)."""
        if replaced(self, snapshot):
            return self
        return InstanceRecord(
            self.name,
            self.principal_id or snapshot.principal_id,
            self.tenant_id or snapshot.identity_tenant,
            self.created_on or snapshot.created_on,
        )


def _differs(recorded: str, seen: str) -> bool:
    return bool(recorded and seen and recorded.lower() != seen.lower())


def replaced(record: InstanceRecord, snapshot: ComputeSnapshot | None) -> str | None:
    """Why ``snapshot`` is not the instance ``record`` describes; None when it is (as far as ARM shows)."""
    if snapshot is None:
        return "it no longer exists in Azure"
    if _differs(record.created_on, snapshot.created_on):
        return f"it was re-created outside this hub (created {snapshot.created_on}, not {record.created_on})"
    if _differs(record.principal_id, snapshot.principal_id):
        return "its managed identity is not the one this hub recorded"
    return None


def token_mismatch(claims: Mapping[str, Any], record: InstanceRecord | None, compute_id: str, hub_tenant: str) -> str | None:
    """Why a validated managed-identity token does not belong to the recorded instance; None when it does.

    Uses only claims Azure sends in every access token (``tid``, ``oid``; ``scp``
    only in delegated tokens) plus ``xms_mirid``, which managed-identity tokens
    carry (its exact form for a compute instance is *unverified*: compared
    case-insensitively). ``idtyp`` is optional and not relied on.
    """
    tenant = str(claims.get("tid", ""))
    if hub_tenant and tenant.lower() != hub_tenant.lower():
        return f"token from tenant {tenant!r}, not this hub's"
    if "scp" in claims:
        return "a delegated (user) token, not the instance's own identity"
    if str(claims.get("xms_mirid", "")).rstrip("/").lower() != compute_id.rstrip("/").lower():
        return "token names another Azure resource"
    if record is None or not record.complete:
        return "this hub has not recorded the instance's identity"
    if record.tenant_id and tenant.lower() != record.tenant_id.lower():
        return f"token from tenant {tenant!r}, not the instance identity's"
    if str(claims.get("oid", "")).lower() != record.principal_id.lower():
        return "token of another identity than the one this hub recorded for the instance"
    return None
