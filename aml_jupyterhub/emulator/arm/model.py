"""Compute instances as Azure ML reports them: the resource body, its rules, and quota.

A compute is kept as a JSON record in ``state.section("computes")`` under
:func:`compute_key`: ``{"resource": <the ARM body>, "subscription": ...,
"pending": <the transition under way or None>}``. The state machine that moves
records along lives in :mod:`aml_jupyterhub.emulator.arm.machine`.

Shapes follow ``get-ComputeInstance.json`` (2023-08-01-preview) and recorded
live answers (``errors: []``, ``lastOperation``, ``schedules``, ``versions``).
The rules (names, idle time, quota held while stopped, states) and their
sources: docs/emulator-fidelity.md.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from ..core.config import VmSize, Workspace
from ..core.handlers import ServiceError
from ..core.instance_host import SERVING, application_endpoints, inner
from ..core.state import EmulatorState

API_VERSION = "2023-08-01-preview"
STATES = (
    "Creating", "CreateFailed", "Deleting", "JobRunning", "Restarting", "Running", "SettingUp", "SetupFailed",
    "Starting", "Stopped", "Stopping", "UserSettingUp", "UserSetupFailed", "Unknown", "Unusable", "Resizing",
)  # fmt: skip  (ComputeInstanceState of the 2023-08-01-preview spec)
# States that hold no vCPU quota. A Stopped instance keeps its quota so it can start again
# ("Stopping the compute instance doesn't release quota"), unless it asked for releaseQuotaOnStop.
RELEASES_CORES = frozenset({"Deleting", "CreateFailed"})
NAME_RULE = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?=.*[a-zA-Z]))*$")
ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
IDLE_MIN, IDLE_MAX = 15 * 60, 3 * 24 * 3600


def iso(timestamp: float) -> str:
    """An ISO 8601 UTC timestamp like ARM's."""
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def compute_key(workspace: Workspace, name: str) -> str:
    """The record key: ARM ids compare case-insensitively."""
    return f"{workspace.arm_id}/computes/{name}".lower()


def compute_id(workspace: Workspace, name: str) -> str:
    return f"{workspace.arm_id}/computes/{name}"


def assigned_oid(resource: dict[str, Any]) -> str:
    """The object id of a personal instance's assigned user ('' when shared)."""
    settings = inner(resource).get("personalComputeInstanceSettings") or {}
    return str((settings.get("assignedUser") or {}).get("objectId", "")).lower()


# -- rules ------------------------------------------------------------------------------------
def check_name(name: str) -> None:
    """400 unless ``name`` follows the compute-instance naming rules."""
    if not (3 <= len(name) <= 24 and NAME_RULE.match(name)):
        raise ServiceError(
            400,
            "ValidationError",
            f"Compute name '{name}' is invalid. It can include letters, digits and dashes. It must start with a "
            "letter, be 3 to 24 characters long, and every dash must be followed later by a letter.",
        )


def idle_seconds(value: Any) -> int:
    """Seconds of an ``idleTimeBeforeShutdown`` ISO 8601 duration; 400 outside 15 minutes .. 3 days."""
    match = ISO_DURATION.match(value) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise ServiceError(400, "ValidationError", f"idleTimeBeforeShutdown '{value}' is not an ISO 8601 duration such as PT30M.")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if not IDLE_MIN <= total <= IDLE_MAX:
        raise ServiceError(
            400, "ValidationError", f"idleTimeBeforeShutdown '{value}' must be between 15 minutes (PT15M) and 3 days (P3D)."
        )
    return total


def check_data_mounts(mounts: Any) -> list[dict[str, Any]]:
    """The body of updateDataMounts: a list of mounts, each with a source and a mount name."""
    if not isinstance(mounts, list) or any(not isinstance(m, dict) or not m.get("source") or not m.get("mountName") for m in mounts):
        raise ServiceError(400, "ValidationError", "The body must be a list of data mounts, each with 'source' and 'mountName'.")
    return mounts


def vm_size(state: EmulatorState, workspace: Workspace, name: str) -> VmSize:
    """The configured VM size, or 400 as for a size the region does not offer."""
    size = state.config.vm_size(name)
    if size is None:
        raise ServiceError(
            400, "ValidationError", f"The VM size '{name}' is not supported for compute instances in region '{workspace.location}'."
        )
    return size


def holds_cores(resource: dict[str, Any]) -> bool:
    """Whether the instance counts against its family's vCPU quota in its present state."""
    props = inner(resource)
    if props.get("state") == "Stopped":
        return props.get("releaseQuotaOnStop") is not True
    return props.get("state") not in RELEASES_CORES


def cores_in_use(state: EmulatorState, subscription: str, location: str, family: str) -> int:
    """vCPUs of ``family`` held by computes of ``subscription`` in ``location``."""
    total = 0
    for record in state.section("computes").values():
        resource = record["resource"]
        size = state.config.vm_size(inner(resource).get("vmSize", ""))
        if (
            size
            and size.family == family
            and record["subscription"] == subscription.lower()
            and resource["location"] == location
            and holds_cores(resource)
        ):
            total += size.cores
    return total


def check_quota(state: EmulatorState, workspace: Workspace, size: VmSize) -> None:
    """400 QuotaExceeded when ``size`` would take the family over its regional vCPU quota."""
    limit = state.config.core_quotas.get(f"{workspace.subscription_id}/{workspace.location}/{size.family}", 0)
    used = cores_in_use(state, workspace.subscription_id, workspace.location, size.family)
    if used + size.cores > limit:
        raise ServiceError(
            400,
            "QuotaExceeded",
            f"The specified subscription has a {size.family} vCPU quota of {limit} and cannot accomodate for at least 1 "
            f"requested compute instance's node which maps to {size.cores} vCPUs (currently using {used}). Talk to your "
            "Subscription Admin or refer to https://docs.microsoft.com/azure/machine-learning/how-to-manage-quotas#request-quota-increases "
            "to increase the quota.",
        )


# -- the resource body ------------------------------------------------------------------------
def new_compute(
    state: EmulatorState, workspace: Workspace, name: str, body: dict[str, Any], caller: dict[str, str]
) -> dict[str, Any]:
    """The resource body of a new compute instance from a PUT body (ARM fills the read-only fields)."""
    outer = body.get("properties") or {}
    requested = outer.get("properties") or {}
    now = iso(state.now())
    ssh = {"sshPublicAccess": "Disabled", "adminUserName": "azureuser", "sshPort": 4001, "adminPublicKey": None}
    props = {
        "subnet": None,
        "applicationSharingPolicy": "Shared",
        "computeInstanceAuthorizationType": "personal",
        "personalComputeInstanceSettings": None,
        "setupScripts": None,
        "enableOSPatching": False,
        "releaseQuotaOnStop": False,  # Azure's documented default: a stopped instance keeps its quota
        "schedules": {"computeStartStop": []},
        "dataMounts": [],
        "dataDisks": None,
        "containers": None,
        "versions": {"runtime": "3.0.02500.0001"},
        **requested,
        "sshSettings": {**ssh, **(requested.get("sshSettings") or {})},
        "osImageMetadata": {"currentImageVersion": "24.10.31", "latestImageVersion": "24.10.31", "isLatestOsImageVersion": True},
        "createdBy": {"userName": caller["name"], "userOrgId": caller["tid"], "userId": caller["oid"]},
        "connectivityEndpoints": {"publicIpAddress": None, "privateIpAddress": "10.0.0.4"},
        "applications": [],
        "errors": [],
        "state": "Creating",
        "lastOperation": None,
    }
    props.setdefault("enableSSO", True)  # SSO is on unless asked off (no source found for turning it off with a script)
    identity = body.get("identity")
    if identity and "systemassigned" in str(identity.get("type", "")).replace(",", "").replace(" ", "").lower():
        identity = {**identity, "principalId": str(uuid.uuid4()), "tenantId": caller["tid"]}
    return {
        "id": compute_id(workspace, name),
        "type": "Microsoft.MachineLearningServices/workspaces/computes",
        "name": name,
        "location": workspace.location,
        "tags": body.get("tags") or {},
        "identity": identity,
        "sku": body.get("sku"),
        "properties": {
            "description": outer.get("description"),
            "createdOn": now,
            "modifiedOn": now,
            "resourceId": None,
            "computeType": "ComputeInstance",
            "computeLocation": workspace.location,
            "provisioningState": "Creating",
            "provisioningErrors": None,
            "isAttachedCompute": False,
            "disableLocalAuth": True,
            "properties": props,
        },
    }


def set_state(state: EmulatorState, resource: dict[str, Any], new_state: str) -> None:
    """Enter ``new_state``: applications exist only while the instance serves them."""
    props = inner(resource)
    props["state"] = new_state
    resource["properties"]["modifiedOn"] = iso(state.now())
    props["applications"] = application_endpoints(state.instances, resource) if new_state in SERVING else []
    for listener in state.runtime.get("compute_listeners", []):
        listener(resource)
    if state.instances is not None:
        state.instances.on_state(resource)


def set_last_operation(state: EmulatorState, resource: dict[str, Any], operation: str, status: str, trigger: str) -> None:
    """``lastOperation`` as Azure reports it (Create/Start/Stop/Restart/Delete; User/IdleShutdown/Schedule)."""
    inner(resource)["lastOperation"] = {
        "operationName": operation.capitalize(),
        "operationTime": iso(state.now()),
        "operationStatus": status,
        "operationTrigger": trigger,
    }
