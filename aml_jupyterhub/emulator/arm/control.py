"""Control routes for the emulated ARM (``/_emulator/arm/...``): see and steer compute instances.

Used through :class:`aml_jupyterhub.emulator.client.EmulatorControl` (``arm_*`` methods).
"""

from __future__ import annotations

from typing import Any

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from .access import ADMIN_ROLES, ROLES, allowed
from .machine import machine, new_operation
from .model import STATES, inner, set_state

FAILURE_STATES = ("CreateFailed", "SetupFailed")


def find_record(state: EmulatorState, name: str) -> tuple[str, dict[str, Any]]:
    """The record of the compute named ``name`` (names are unique per region), or 404."""
    for key, record in state.section("computes").items():
        if record["resource"]["name"].lower() == name.lower():
            return key, record
    raise ServiceError(404, "NotFound", f"No compute named {name}.")


class ControlComputes(EmulatorHandler):
    """Every compute resource, across workspaces."""

    def get(self) -> None:
        self.send_json(200, {"computes": [r["resource"] for r in self.state.section("computes").values()]})


class ControlComputeState(EmulatorHandler):
    """Force a compute into any of the 16 states now (a transition under way ends Canceled)."""

    def post(self, name: str) -> None:
        new_state = self.json_body().get("state")
        if new_state not in STATES:
            raise ServiceError(400, "BadRequest", f"state must be one of {STATES}")
        key, record = find_record(self.state, name)
        machine(self.state).abandon(key)
        set_state(self.state, record["resource"], new_state)
        self.state.mark_dirty()
        self.send_json(200, record["resource"])


class ControlComputeSettle(EmulatorHandler):
    """Finish the transition under way now, whatever the timings say."""

    def post(self, name: str) -> None:
        key, record = find_record(self.state, name)
        machine(self.state).settle(key)
        self.send_json(200, {"compute": record["resource"], "exists": key in self.state.section("computes")})


class ControlIdleShutdown(EmulatorHandler):
    """Stop a running instance as its idle-shutdown timer would (``lastOperation.operationTrigger``: IdleShutdown).

    Azure never shuts down, for inactivity, an instance whose managed identity lacks Contributor on the
    workspace: such an instance answers 409 and keeps running. ``?trigger=Schedule`` stops it as a
    start/stop schedule would, which no identity rule holds back.
    """

    def post(self, name: str) -> None:
        key, record = find_record(self.state, name)
        resource = record["resource"]
        if inner(resource)["state"] not in ("Running", "JobRunning"):
            raise ServiceError(409, "Conflict", f"{name} is not running.")
        trigger = self.get_query_argument("trigger", "IdleShutdown")
        if trigger not in ("IdleShutdown", "Schedule"):
            raise ServiceError(400, "BadRequest", "trigger must be IdleShutdown or Schedule.")
        principal = (resource.get("identity") or {}).get("principalId")
        if trigger == "IdleShutdown" and principal and not self.contributor(resource["id"], principal):
            raise ServiceError(
                409, "IdleShutdownNotApplied",
                f"{name} has a managed identity without Contributor on its workspace: Azure does not shut it down "
                "due to inactivity.",
            )  # fmt: skip
        subscription, location = record["subscription"], resource["location"]
        op_id = new_operation(self.state, "stop", key, subscription, location)
        machine(self.state).begin(key, "stop", "Stopping", op_id, trigger=trigger)
        self.send_json(200, resource)

    def contributor(self, resource_id: str, principal: str) -> bool:
        workspace = next(w for w in self.state.config.workspaces if resource_id.lower().startswith(w.arm_id.lower() + "/"))
        return workspace.role_assignments.get(principal) in ADMIN_ROLES


class ControlFailNext(EmulatorHandler):
    """Make the next create or start of ``name`` (or of any compute) fail as CreateFailed or SetupFailed."""

    def post(self) -> None:
        spec = self.json_body()
        if spec.get("operation") not in ("create", "start") or spec.get("state") not in FAILURE_STATES:
            raise ServiceError(400, "BadRequest", "operation: create|start, state: CreateFailed|SetupFailed")
        key = str(spec.get("name") or "*").lower()
        machine(self.state).fail_next[key] = {
            "operation": spec["operation"],
            "state": spec["state"],
            "code": spec.get("code") or "ComputeInstanceFailed",
            "message": spec.get("message") or "The compute instance failed (injected by the emulator).",
        }
        self.send_json(200, {"armed": key})


class ControlPageSize(EmulatorHandler):
    """How many computes a list page holds (``nextLink`` beyond it)."""

    def put(self) -> None:
        size = int(self.json_body().get("size", 0))
        if size < 1:
            raise ServiceError(400, "BadRequest", "size must be at least 1")
        self.state.runtime["arm_page_size"] = size
        self.send_json(200, {"size": size})


class ControlRoleAssignment(EmulatorHandler):
    """Give a principal (upn or object id) a role on a workspace, or take it away."""

    def put(self, workspace: str, principal: str) -> None:
        role = self.json_body().get("role")
        if role not in ROLES:
            raise ServiceError(400, "BadRequest", f"role must be one of {sorted(ROLES)}")
        self.assignments(workspace)[self.oid(principal)] = role
        self.send_json(200, {"role": role})

    def delete(self, workspace: str, principal: str) -> None:
        self.assignments(workspace).pop(self.oid(principal), None)
        self.send_json(200, {"role": None})

    def assignments(self, name: str) -> dict[str, str]:
        ws = next((w for w in self.state.config.workspaces if w.name.lower() == name.lower()), None)
        if ws is None:
            raise ServiceError(404, "NotFound", f"No workspace named {name}.")
        return ws.role_assignments

    def oid(self, principal: str) -> str:
        user = self.state.config.user(principal)
        return user.oid if user else principal


class ControlAccess(EmulatorHandler):
    """Whether a principal's role on a resource's workspace grants an action (the instance gateway asks)."""

    def get(self) -> None:
        scope, principal = self.get_query_argument("scope", ""), self.get_query_argument("principal", "").lower()
        workspace = next((w for w in self.state.config.workspaces if scope.lower().startswith(w.arm_id.lower() + "/")), None)
        if workspace is None:
            raise ServiceError(404, "NotFound", f"No workspace holds {scope}.")
        role = next((r for oid, r in workspace.role_assignments.items() if oid.lower() == principal), None)
        self.send_json(200, {"allowed": allowed(role, self.get_query_argument("action", ""))})


class ControlThrottle(EmulatorHandler):
    """Forget every throttle bucket (all full again)."""

    def delete(self) -> None:
        self.state.runtime.pop("arm_throttle", None)
        self.send_json(200, {"buckets": 0})


# path under /_emulator/arm/ -> handler
CONTROL_ROUTES = (
    (r"computes", ControlComputes),
    (r"computes/([^/]+)/state", ControlComputeState),
    (r"computes/([^/]+)/settle", ControlComputeSettle),
    (r"computes/([^/]+)/idle-shutdown", ControlIdleShutdown),
    (r"fail-next", ControlFailNext),
    (r"page-size", ControlPageSize),
    (r"workspaces/([^/]+)/roles/([^/]+)", ControlRoleAssignment),
    (r"throttle", ControlThrottle),
    (r"access", ControlAccess),
)


def control_routes(state: EmulatorState) -> list:
    return [(f"/_emulator/arm/{path}", handler, {"state": state}) for path, handler in CONTROL_ROUTES]
