"""Compute instances as Azure ML reports them, and their state machine on configurable timings.

A compute is kept as a JSON record in ``state.section("computes")``: the ARM
resource body plus the pending transition (target state and when), so an
emulator restarted on its data dir finishes transitions that were under way.
Long-running operations live in ``state.section("arm_operations")``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from typing import Any

from .config import Workspace
from .handlers import ServiceError
from .keys import new_id
from .state import EmulatorState

API_VERSION = "2023-08-01-preview"
NAME_RULE = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?=.*[a-zA-Z]))*$")
STATES = (
    "Creating", "CreateFailed", "Deleting", "JobRunning", "Restarting", "Running", "SettingUp", "SetupFailed",
    "Starting", "Stopped", "Stopping", "UserSettingUp", "UserSetupFailed", "Unknown", "Unusable",
)  # fmt: skip
COUNTS_AGAINST_QUOTA = frozenset(set(STATES) - {"Stopped", "Deleting", "CreateFailed"})


def iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def compute_key(workspace: Workspace, name: str) -> str:
    return f"{workspace.arm_id}/computes/{name}".lower()


def check_name(name: str) -> None:
    if not (3 <= len(name) <= 24 and NAME_RULE.match(name)):
        raise ServiceError(
            400,
            "ValidationError",
            f"Compute name '{name}' is invalid. It can include letters, digits and dashes. It must start with a "
            "letter, be 3 to 24 characters long, and every dash must be followed later by a letter.",
        )


def application_endpoints(state: EmulatorState, name: str, location: str) -> list[dict[str, str]]:
    """The instance's application URLs (the one place a local CI runtime can redirect them)."""
    endpoint = state.runtime.get("ci_endpoint")
    base = endpoint(name) if endpoint else f"https://{name}.{location}.instances.azureml.ms"
    return [
        {"displayName": "Jupyter", "endpointUri": f"{base}/tree/"},
        {"displayName": "Jupyter Lab", "endpointUri": f"{base}/lab"},
    ]


def new_compute(
    state: EmulatorState, workspace: Workspace, name: str, body: dict[str, Any], caller: dict[str, str]
) -> dict[str, Any]:
    """The resource body of a new compute instance from a PUT body (ARM fills the read-only fields)."""
    requested = (body.get("properties") or {}).get("properties") or {}
    now = iso(state.now())
    inner = {
        **requested,
        "applicationSharingPolicy": requested.get("applicationSharingPolicy", "Personal"),
        "computeInstanceAuthorizationType": requested.get("computeInstanceAuthorizationType", "personal"),
        "sshSettings": {"sshPublicAccess": "Disabled", "adminUserName": "azureuser", "sshPort": 4001, **(requested.get("sshSettings") or {})},
        "osImageMetadata": {"currentImageVersion": "24.10.31", "latestImageVersion": "24.10.31", "isLatestOsImageVersion": True},
        "createdBy": {"userName": caller["name"], "userOrgId": caller["tid"], "userId": caller["oid"]},
        "connectivityEndpoints": {"publicIpAddress": None, "privateIpAddress": "10.0.0.4"},
        "applications": [],
        "errors": None,
        "state": "Creating",
        "dataMounts": [],
    }
    return {
        "id": f"{workspace.arm_id}/computes/{name}",
        "type": "Microsoft.MachineLearningServices/workspaces/computes",
        "name": name,
        "location": workspace.location,
        "tags": body.get("tags") or {},
        "identity": body.get("identity"),
        "properties": {
            "description": (body.get("properties") or {}).get("description"),
            "createdOn": now,
            "modifiedOn": now,
            "computeType": "ComputeInstance",
            "computeLocation": workspace.location,
            "provisioningState": "Creating",
            "provisioningErrors": None,
            "isAttachedCompute": False,
            "disableLocalAuth": True,
            "properties": inner,
        },
    }


def inner(resource: dict[str, Any]) -> dict[str, Any]:
    return resource["properties"]["properties"]


def set_state(state: EmulatorState, resource: dict[str, Any], new_state: str) -> None:
    props = inner(resource)
    props["state"] = new_state
    resource["properties"]["modifiedOn"] = iso(state.now())
    if new_state in ("Running", "JobRunning"):
        props["applications"] = application_endpoints(state, resource["name"], resource["location"])
    elif new_state in ("Stopped", "Deleting", "CreateFailed", "Unusable"):
        props["applications"] = []
    for listener in state.runtime.get("compute_listeners", []):
        listener(resource)


# -- operations ------------------------------------------------------------------------
def new_operation(state: EmulatorState, kind: str, compute: str) -> str:
    op_id = new_id()
    state.section("arm_operations")[op_id] = {
        "id": op_id,
        "name": op_id,
        "kind": kind,
        "compute": compute,
        "status": "InProgress",
        "startTime": iso(state.now()),
    }
    state.mark_dirty()
    return op_id


def finish_operation(state: EmulatorState, op_id: str | None, error: dict[str, str] | None = None) -> None:
    op = state.section("arm_operations").get(op_id or "")
    if op is None:
        return
    op["status"] = "Failed" if error else "Succeeded"
    op["endTime"] = iso(state.now())
    if error:
        op["error"] = error
    state.mark_dirty()


# -- the state machine ------------------------------------------------------------------
# (current state, operation) -> [(state to enter, timing name)] after the first, immediate one
Plan = list[tuple[str, str]]


def plan_for(operation: str, resource: dict[str, Any]) -> Plan:
    has_setup = bool(inner(resource).get("setupScripts"))
    if operation == "create":
        return [("SettingUp", "create"), ("Running", "setup")] if has_setup else [("Running", "create")]
    if operation == "start":
        return [("Running", "start")]
    if operation == "stop":
        return [("Stopped", "stop")]
    if operation == "restart":
        return [("Running", "restart")]
    if operation == "delete":
        return [("<gone>", "delete")]
    raise ValueError(operation)


class ComputeMachine:
    """Drives compute records through their transitions with ``loop.call_later``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.timers: dict[str, asyncio.TimerHandle] = {}
        # name (or "*") -> {"operation": "create"|"start", "state": "...", "code": ..., "message": ...}
        self.fail_next: dict[str, dict[str, str]] = {}
        state.reset_hooks.append(self.cancel_all)

    @property
    def records(self) -> dict[str, Any]:
        return self.state.section("computes")

    def begin(self, key: str, operation: str, first_state: str, op_id: str) -> None:
        """Enter ``first_state`` now and schedule the rest of ``operation``."""
        record = self.records[key]
        set_state(self.state, record["resource"], first_state)
        record["pending"] = {"operation": operation, "steps": plan_for(operation, record["resource"]), "op": op_id}
        self._schedule_next(key)

    def _schedule_next(self, key: str) -> None:
        record = self.records.get(key)
        if record is None or not record.get("pending"):
            return
        _, timing = record["pending"]["steps"][0]
        delay = getattr(self.state.config.timings, timing)
        record["pending"]["due"] = self.state.now() + delay
        self.state.mark_dirty()
        self._arm_timer(key, delay)

    def _arm_timer(self, key: str, delay: float) -> None:
        if key in self.timers:
            self.timers[key].cancel()
        loop = asyncio.get_running_loop()
        self.timers[key] = loop.call_later(max(0.0, delay), self._advance, key)

    def _advance(self, key: str) -> None:
        self.timers.pop(key, None)
        record = self.records.get(key)
        if record is None or not record.get("pending"):
            return
        pending = record["pending"]
        target, _ = pending["steps"].pop(0)
        failure = self._injected_failure(record["resource"]["name"], pending["operation"], target)
        if target == "<gone>":
            del self.records[key]
            finish_operation(self.state, pending["op"])
        elif failure:
            self._fail(record, failure)
        else:
            set_state(self.state, record["resource"], target)
            if not pending["steps"]:
                record["resource"]["properties"]["provisioningState"] = "Succeeded"
                record["pending"] = None
                finish_operation(self.state, pending["op"])
        self.state.mark_dirty()
        self._schedule_next(key)

    def _injected_failure(self, name: str, operation: str, target: str) -> dict[str, str] | None:
        for key in (name.lower(), "*"):
            spec = self.fail_next.get(key)
            if spec and spec["operation"] == operation and (target == "Running" or spec["state"] == "CreateFailed"):
                return self.fail_next.pop(key)
        return None

    def _fail(self, record: dict[str, Any], failure: dict[str, str]) -> None:
        resource = record["resource"]
        error = {"code": failure.get("code", "ComputeFailed"), "message": failure.get("message", "Injected failure.")}
        set_state(self.state, resource, failure["state"])
        inner(resource)["errors"] = [{"error": error}]
        if failure["state"] == "CreateFailed":
            resource["properties"]["provisioningState"] = "Failed"
            resource["properties"]["provisioningErrors"] = [{"error": error}]
        else:
            resource["properties"]["provisioningState"] = "Succeeded"
        finish_operation(self.state, record["pending"]["op"], error)
        record["pending"] = None

    def resume(self) -> None:
        """After a restart on a data dir: finish the transitions that were under way."""
        for key, record in self.records.items():
            pending = record.get("pending")
            if pending:
                self._arm_timer(key, pending.get("due", 0) - self.state.now())

    def cancel(self, key: str) -> None:
        timer = self.timers.pop(key, None)
        if timer:
            timer.cancel()

    def cancel_all(self) -> None:
        for key in list(self.timers):
            self.cancel(key)
        self.fail_next.clear()


def machine(state: EmulatorState) -> ComputeMachine:
    if "compute_machine" not in state.runtime:
        state.runtime["compute_machine"] = ComputeMachine(state)
    return state.runtime["compute_machine"]


def cores_in_use(state: EmulatorState, subscription: str, location: str, family: str) -> int:
    total = 0
    for record in state.section("computes").values():
        resource = record["resource"]
        size = state.config.vm_size(inner(resource).get("vmSize", ""))
        if (
            size
            and size.family == family
            and record["subscription"] == subscription.lower()
            and resource["location"] == location
            and inner(resource).get("state") in COUNTS_AGAINST_QUOTA
        ):
            total += size.cores
    return total

