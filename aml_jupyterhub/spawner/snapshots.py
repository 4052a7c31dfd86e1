"""What the spawner knows about one compute instance, read from Azure's REST shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .states import Phase, phase_of


@dataclass(frozen=True)
class ComputeSnapshot:
    name: str
    state: str | None
    vm_size: str = ""
    assigned_oid: str = ""
    assigned_tenant: str = ""
    endpoints: Mapping[str, str] = field(default_factory=dict)  # displayName -> endpointUri
    errors: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    principal_id: str = ""  # the system-assigned identity's object id (``identity.principalId``)
    identity_tenant: str = ""  # ``identity.tenantId``
    created_on: str = ""  # ``properties.createdOn``: a re-created same-name instance has another

    @property
    def phase(self) -> Phase:
        return phase_of(self.state)

    @classmethod
    def from_rest(cls, body: Mapping[str, Any]) -> ComputeSnapshot:
        outer = body.get("properties") or {}
        inner = outer.get("properties") or {}
        assigned = (inner.get("personalComputeInstanceSettings") or {}).get("assignedUser") or {}
        identity = body.get("identity") or {}
        errors = [*(inner.get("errors") or []), *(outer.get("provisioningErrors") or [])]
        return cls(
            name=body.get("name", ""),
            state=inner.get("state"),
            vm_size=inner.get("vmSize", ""),
            assigned_oid=assigned.get("objectId", ""),
            assigned_tenant=assigned.get("tenantId", ""),
            endpoints={a.get("displayName", ""): a.get("endpointUri", "") for a in inner.get("applications") or []},
            errors=tuple(_error_text(e) for e in errors),
            tags=dict(body.get("tags") or {}),
            principal_id=str(identity.get("principalId") or ""),
            identity_tenant=str(identity.get("tenantId") or ""),
            created_on=str(outer.get("createdOn") or ""),
        )

    def jupyter_url(self, preferred: tuple[str, ...] = ("Jupyter Lab", "JupyterLab", "Jupyter")) -> str | None:
        for name in preferred:
            if self.endpoints.get(name):
                return self.endpoints[name]
        return None


def _error_text(error: Mapping[str, Any]) -> str:
    inner = error.get("error", error)
    code, message = inner.get("code", ""), inner.get("message", "")
    return f"{code}: {message}" if code and message else code or message
