"""ARM for Azure Machine Learning workspaces and compute instances (api-version 2023-08-01-preview).

Routes (W = ``/subscriptions/{s}/resourceGroups/{rg}/providers/
Microsoft.MachineLearningServices/workspaces/{ws}``, matched case-insensitively):
``GET W``; ``GET W/computes`` (paged with ``nextLink``); ``GET|PUT|DELETE
W/computes/{name}``; ``POST W/computes/{name}/start|stop|restart|
updateIdleShutdownSetting|updateDataMounts``; and the operation URLs the LRO
headers point to, ``.../locations/{region}/computeOperationsStatus|Result/{id}``.

Every request needs ``api-version`` (400), a valid ARM bearer token (401), a
role on the workspace granting the action (403) and a throttle token (429).
Shapes follow the official examples in ``tests/reference/``. Each rule, its
source and what is unverified (codes and messages, a PUT on an existing
compute refused with 409...): docs/emulator-fidelity.md.
"""

from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import urlencode

from ..core.config import Workspace
from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from ..core.tokens import Caller
from .access import authenticate, authorize, deny, is_admin
from .machine import cancel_timers, machine, new_operation
from .model import (
    API_VERSION,
    assigned_oid,
    check_data_mounts,
    check_name,
    check_quota,
    holds_cores,
    compute_id,
    compute_key,
    idle_seconds,
    inner,
    new_compute,
    vm_size,
)
from .throttle import throttle
from .workspaces import workspace_body

W = r"(?i)/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/([^/]+)"
OPS = r"(?i)/subscriptions/([^/]+)/providers/Microsoft\.MachineLearningServices/locations/([^/]+)"
DEFAULT_PAGE_SIZE = 100
# action -> (states it may start from, the state it enters at once, the error code otherwise)
TRANSITIONS = {
    "start": (("Stopped",), "Starting", "StartComputeInstanceOnlyAllowedInStoppedState"),
    "stop": (("Running", "JobRunning"), "Stopping", "StopComputeInstanceOnlyAllowedInRunningState"),
    "restart": (("Running", "JobRunning", "Unusable"), "Restarting", "RestartComputeInstanceOnlyAllowedInRunningState"),
}


def not_found(kind: str, name: str, group: str) -> ServiceError:
    """ARM's 404 for a resource that does not exist."""
    return ServiceError(
        404,
        "ResourceNotFound",
        f"The Resource '{kind}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


class ArmHandler(EmulatorHandler):
    """Checks api-version and the bearer token; subclasses look up the workspace, throttle and authorize."""

    caller: Caller

    def set_default_headers(self) -> None:
        super().set_default_headers()
        for key, value in getattr(self, "sticky_headers", {}).items():
            self.set_header(key, value)

    def keep_header(self, name: str, value: str) -> None:
        """A header on the answer whatever it is, errors included (they clear the others)."""
        self.sticky_headers = {**getattr(self, "sticky_headers", {}), name: value}
        self.set_header(name, value)

    async def prepare(self) -> None:
        await super().prepare()
        if self._finished:
            return
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self.state.now()))
        self.keep_header("x-ms-routing-request-id", f"EASTUS:{stamp}:{self.request_id}")
        if self.get_query_argument("api-version", None) is None:
            raise ServiceError(
                400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."
            )
        self.caller = authenticate(self.state, self.request.headers.get("Authorization"))
        self.principal = self.caller.name or self.caller.oid

    # -- lookups and checks ------------------------------------------------------------------
    def workspace(self, subscription: str, group: str, name: str) -> Workspace:
        """The workspace of the path (throttled in its region), or ARM's 404."""
        ws = self.state.config.workspace(subscription, group, name)
        self.throttle(subscription, ws.location if ws else "global")
        if ws is not None:
            return ws
        known = self.state.config.workspaces
        if not any(w.subscription_id.lower() == subscription.lower() for w in known):
            raise ServiceError(404, "SubscriptionNotFound", f"The subscription '{subscription}' could not be found.")
        if not any(w.resource_group.lower() == group.lower() for w in known):
            raise ServiceError(404, "ResourceGroupNotFound", f"Resource group '{group}' could not be found.")
        raise not_found("Microsoft.MachineLearningServices/workspaces", name, group)

    def throttle(self, subscription: str, region: str) -> None:
        write = self.request.method != "GET"
        for key, value in throttle(self.state).take(self.caller.oid, subscription, region, write).items():
            self.keep_header(key, value)

    def authorize(self, ws: Workspace, action: str, scope: str | None = None) -> None:
        authorize(ws, self.caller, action, scope or ws.arm_id)

    def record(self, ws: Workspace, name: str) -> dict[str, Any] | None:
        return self.state.section("computes").get(compute_key(ws, name))

    def existing(self, ws: Workspace, name: str) -> dict[str, Any]:
        record = self.record(ws, name)
        if record is None:
            raise not_found(f"Microsoft.MachineLearningServices/workspaces/{ws.name}/computes", name, ws.resource_group)
        return record

    def require_assigned_or_admin(self, ws: Workspace, resource: dict[str, Any], action: str) -> None:
        """A personal compute instance is managed by its assigned user or a workspace Owner/Contributor only."""
        owner = assigned_oid(resource)
        if owner and owner != self.caller.oid.lower() and not is_admin(ws, self.caller):
            deny(self.caller, action, resource["id"])

    # -- long-running operations ------------------------------------------------------------
    def begin(self, ws: Workspace, name: str, operation: str, first_state: str) -> dict[str, str]:
        """Start ``operation`` on the compute; returns the LRO headers pointing at it."""
        key = compute_key(ws, name)
        op_id = new_operation(self.state, operation, key, ws.subscription_id, ws.location)
        machine(self.state).begin(key, operation, first_state, op_id)
        return self.lro_headers(ws.subscription_id, ws.location, op_id)

    def lro_headers(self, subscription: str, location: str, op_id: str) -> dict[str, str]:
        base = f"{self.state.urls['arm']}/subscriptions/{subscription}/providers/Microsoft.MachineLearningServices/locations/{location}"
        headers = {
            "Azure-AsyncOperation": f"{base}/computeOperationsStatus/{op_id}?api-version={API_VERSION}",
            "Location": f"{base}/computeOperationsResult/{op_id}?api-version={API_VERSION}",
        }
        return {**headers, **self.retry_after()}

    def retry_after(self) -> dict[str, str]:
        seconds = self.state.config.timings.lro_retry_after
        return {} if seconds is None else {"Retry-After": str(seconds)}


class WorkspaceItem(ArmHandler):
    def get(self, subscription: str, group: str, name: str) -> None:
        ws = self.workspace(subscription, group, name)
        self.authorize(ws, "workspaces/read")
        self.send_json(200, workspace_body(self.state, ws))


class ComputeList(ArmHandler):
    def get(self, subscription: str, group: str, name: str) -> None:
        ws = self.workspace(subscription, group, name)
        self.authorize(ws, "workspaces/computes/read")
        prefix = compute_key(ws, "")
        values = [r["resource"] for k, r in self.state.section("computes").items() if k.startswith(prefix)]
        size = int(self.state.runtime.get("arm_page_size", DEFAULT_PAGE_SIZE))
        token = self.get_query_argument("$skipToken", "0") or "0"
        if not token.isdigit():
            raise ServiceError(400, "InvalidSkipToken", f"The $skipToken '{token}' is not valid.")
        start = int(token)
        body: dict[str, Any] = {"value": values[start : start + size]}
        if start + size < len(values):
            query = urlencode({"api-version": API_VERSION, "$skipToken": start + size})
            body["nextLink"] = f"{self.state.urls['arm']}{self.request.path}?{query}"
        self.send_json(200, body)


class ComputeItem(ArmHandler):
    def get(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        self.authorize(ws, "workspaces/computes/read", compute_id(ws, name))
        self.send_json(200, self.existing(ws, name)["resource"])

    def put(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        self.authorize(ws, "workspaces/computes/write", compute_id(ws, name))
        check_name(name)
        body = self.json_body()
        outer = body.get("properties") or {}
        if outer.get("computeType") != "ComputeInstance":
            raise ServiceError(400, "ValidationError", "This emulator supports computeType 'ComputeInstance' only.")
        props = outer.setdefault("properties", {})
        self.assign(ws, name, props)
        self.check_unique(ws, name)
        if props.get("idleTimeBeforeShutdown") is not None:
            idle_seconds(props["idleTimeBeforeShutdown"])
        check_quota(self.state, ws, vm_size(self.state, ws, props.get("vmSize", "")))
        caller = {"name": self.caller.name, "oid": self.caller.oid, "tid": self.caller.tenant_id}
        resource = new_compute(self.state, ws, name, body, caller)
        self.state.section("computes")[compute_key(ws, name)] = {
            "resource": resource,
            "subscription": ws.subscription_id.lower(),
            "pending": None,
        }
        headers = self.begin(ws, name, "create", "Creating")
        self.send_json(201, resource, headers)

    def delete(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        self.authorize(ws, "workspaces/computes/delete", compute_id(ws, name))
        action = self.get_query_argument("underlyingResourceAction", None)
        if action not in ("Delete", "Detach"):
            raise ServiceError(
                400, "ValidationError", "The query parameter 'underlyingResourceAction' is required: 'Delete' or 'Detach'."
            )
        record = self.record(ws, name)
        if record is None:
            self.send_json(204)
            return
        self.require_assigned_or_admin(ws, record["resource"], "workspaces/computes/delete")
        pending = record.get("pending") or {}
        if pending.get("operation") == "delete":  # already on its way: the same operation
            self.send_json(202, None, self.lro_headers(ws.subscription_id, ws.location, pending["op"]))
            return
        self.send_json(202, None, self.begin(ws, name, "delete", "Deleting"))

    def assign(self, ws: Workspace, name: str, props: dict[str, Any]) -> None:
        """A personal instance belongs to the caller unless an Owner/Contributor creates it for someone."""
        if props.get("computeInstanceAuthorizationType", "personal") != "personal":
            return
        settings = props.get("personalComputeInstanceSettings") or {}
        assigned = settings.get("assignedUser") or {"objectId": self.caller.oid, "tenantId": self.caller.tenant_id}
        props["personalComputeInstanceSettings"] = {**settings, "assignedUser": assigned}
        props.setdefault("applicationSharingPolicy", "Personal")
        if str(assigned.get("objectId", "")).lower() != self.caller.oid.lower() and not is_admin(ws, self.caller):
            deny(self.caller, "workspaces/computes/write", compute_id(ws, name))

    def check_unique(self, ws: Workspace, name: str) -> None:
        """409 when a compute of that name exists in the workspace or anywhere in its region."""
        for key, record in self.state.section("computes").items():
            resource = record["resource"]
            if resource["name"].lower() != name.lower() or resource["location"] != ws.location:
                continue
            if key == compute_key(ws, name):
                message = f"A compute named '{name}' already exists in workspace '{ws.name}'; delete it before creating it again."
            else:
                message = f"Compute name '{name}' is already in use in region '{ws.location}'; compute names are unique per region."
            raise ServiceError(409, "Conflict", message)


class ComputeAction(ArmHandler):
    def post(self, subscription: str, group: str, ws_name: str, name: str, action: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        action = next(a for a in (*TRANSITIONS, *UPDATES) if a.lower() == action.lower())
        arm_action = f"workspaces/computes/{action}/action"
        self.authorize(ws, arm_action, compute_id(ws, name))
        record = self.existing(ws, name)
        self.require_assigned_or_admin(ws, record["resource"], arm_action)
        if action in TRANSITIONS:
            self.transition(ws, name, record, action)
        else:
            field, check = UPDATES[action]
            inner(record["resource"])[field] = check(self.json_body())
            self.state.mark_dirty()
            self.send_json(200)

    def transition(self, ws: Workspace, name: str, record: dict[str, Any], action: str) -> None:
        """start/stop/restart: 400 from a state that does not allow it, else 202 and the operation."""
        allowed, first_state, code = TRANSITIONS[action]
        current = inner(record["resource"])["state"]
        if current not in allowed:
            raise ServiceError(
                400,
                code,
                f"{action.capitalize()} Azure ML Compute Instance is only allowed when the instance {name} is in "
                f"'{' or '.join(s.lower() for s in allowed)}' state",
            )
        if action == "start" and not holds_cores(record["resource"]):  # released on stop: it needs quota again
            check_quota(self.state, ws, vm_size(self.state, ws, inner(record["resource"]).get("vmSize", "")))
        self.send_json(202, None, self.begin(ws, name, action, first_state))


def idle_setting(body: Any) -> str:
    """The body of updateIdleShutdownSetting -> the validated ISO 8601 duration."""
    value = body.get("idleTimeBeforeShutdown") if isinstance(body, dict) else None
    idle_seconds(value)
    return str(value)


# action -> (the field of properties.properties it replaces, the check of the body giving its value)
UPDATES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "updateIdleShutdownSetting": ("idleTimeBeforeShutdown", idle_setting),
    "updateDataMounts": ("dataMounts", check_data_mounts),
}


class OperationStatus(ArmHandler):
    """``Azure-AsyncOperation``: the operation's status, with Retry-After while in progress."""

    def get(self, subscription: str, location: str, op_id: str) -> None:
        op = self.operation(subscription, location, op_id)
        body = {k: op[k] for k in ("id", "name", "status", "startTime", "endTime", "error") if k in op}
        self.send_json(200, body, self.retry_after() if op["status"] == "InProgress" else None)

    def operation(self, subscription: str, location: str, op_id: str) -> dict[str, Any]:
        self.throttle(subscription, location)
        op = self.state.section("arm_operations").get(op_id)
        if op is None or op.get("subscription", subscription.lower()) != subscription.lower():
            raise ServiceError(404, "NotFound", f"The operation '{op_id}' was not found.")
        return op


class OperationResult(OperationStatus):
    """``Location``: 202 while in progress, then the result (200 with the compute, or 204), or the error."""

    def get(self, subscription: str, location: str, op_id: str) -> None:
        op = self.operation(subscription, location, op_id)
        if op["status"] == "InProgress":
            self.send_json(202, None, {"Location": self.request.full_url(), **self.retry_after()})
        elif op["status"] == "Failed":
            raise ServiceError(400, op["error"]["code"], op["error"]["message"])
        elif op["status"] == "Canceled":
            raise ServiceError(409, "OperationCanceled", "The operation was canceled by a later operation on the compute.")
        else:
            record = self.state.section("computes").get(op["compute"])
            if op["kind"] == "create" and record:
                self.send_json(200, record["resource"])
            else:
                self.send_json(204)


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    actions = "|".join((*TRANSITIONS, *UPDATES))
    return [
        (W + r"$", WorkspaceItem, kw),
        (W + r"/computes$", ComputeList, kw),
        (W + r"/computes/([^/]+)$", ComputeItem, kw),
        (W + rf"/computes/([^/]+)/({actions})$", ComputeAction, kw),
        (OPS + r"/computeOperationsStatus/([^/]+)$", OperationStatus, kw),
        (OPS + r"/computeOperationsResult/([^/]+)$", OperationResult, kw),
    ]


def on_start(state: EmulatorState) -> None:
    """Resume transitions persisted under way; cancel timers when the state is reset."""
    state.reset_hooks.append(lambda: cancel_timers(state))
    machine(state).resume()
