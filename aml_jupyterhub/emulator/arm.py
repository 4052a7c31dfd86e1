"""ARM for Azure Machine Learning workspaces and compute instances (api-version 2023-08-01-preview).

Shapes follow ``shared/reference/aml-compute-rest-2023-08-01-preview``: PUT
answers 201 with ``Azure-AsyncOperation`` + ``Location`` (+ ``Retry-After``),
start/stop/restart/delete answer 202 likewise, and the operation status
resource reports InProgress/Succeeded/Failed. Every request needs a valid ARM
bearer token (401), a role on the workspace (403) and a throttle token (429).

Deviations: error codes for invalid names, quota and wrong-state actions are
Azure-like but not verified against live Azure; a PUT on an existing compute
is refused (409) instead of updating it.
"""

from __future__ import annotations

from typing import Any

from .arm_access import Throttle, authenticate, authorize, deny, is_admin
from .compute_model import (
    API_VERSION,
    STATES,
    check_name,
    compute_key,
    cores_in_use,
    inner,
    machine,
    new_compute,
    new_operation,
    set_state,
)
from .config import Workspace
from .handlers import EmulatorHandler, ServiceError
from .state import EmulatorState

W = r"(?i)/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/([^/]+)"
OPS = r"(?i)/subscriptions/([^/]+)/providers/Microsoft\.MachineLearningServices/locations/([^/]+)"


class ArmHandler(EmulatorHandler):
    """Authenticates every request; subclasses look up the workspace and throttle."""

    async def prepare(self) -> None:
        await super().prepare()
        if self.get_query_argument("api-version", None) is None:
            raise ServiceError(
                400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests."
            )
        authority = self.state.urls.get("authority", "https://login.microsoftonline.com")
        self.caller = authenticate(self.state, self.request.headers.get("Authorization"), authority)
        self.principal = self.caller.name or self.caller.oid
        self.set_header("x-ms-routing-request-id", f"EASTUS:{self.request_id}")

    def workspace(self, subscription: str, group: str, name: str) -> Workspace:
        ws = self.state.config.workspace(subscription, group, name)
        if ws is None:
            raise ServiceError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{name}' under resource group '{group}' was not found.",
            )
        self.throttle(ws.subscription_id, ws.location)
        return ws

    def throttle(self, subscription: str, region: str) -> None:
        throttle: Throttle = self.state.runtime.setdefault("arm_throttle", Throttle(self.state))
        write = self.request.method != "GET"
        _, headers = throttle.take(self.caller.oid, subscription, region, write)
        for key, value in headers.items():
            self.set_header(key, value)

    def lro_headers(self, ws: Workspace, op_id: str) -> dict[str, str]:
        base = (
            f"{self.state.urls['arm']}/subscriptions/{ws.subscription_id}/providers/"
            f"Microsoft.MachineLearningServices/locations/{ws.location}"
        )
        headers = {
            "Azure-AsyncOperation": f"{base}/computeOperationsStatus/{op_id}?api-version={API_VERSION}",
            "Location": f"{base}/computeOperationsResult/{op_id}?api-version={API_VERSION}",
        }
        retry_after = self.state.config.timings.lro_retry_after
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return headers

    def record(self, ws: Workspace, name: str) -> dict[str, Any] | None:
        return self.state.section("computes").get(compute_key(ws, name))

    def existing(self, ws: Workspace, name: str) -> dict[str, Any]:
        record = self.record(ws, name)
        if record is None:
            raise ServiceError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.MachineLearningServices/workspaces/{ws.name}/computes/{name}' under "
                f"resource group '{ws.resource_group}' was not found.",
            )
        return record

    def require_owner_or_admin(self, ws: Workspace, resource: dict[str, Any], action: str) -> None:
        """A personal compute instance is managed by its assigned user or a workspace admin only."""
        assigned = (inner(resource).get("personalComputeInstanceSettings") or {}).get("assignedUser") or {}
        if assigned.get("objectId", "").lower() != self.caller.oid.lower() and not is_admin(ws, self.caller):
            deny(self.caller, action, resource["id"])


class WorkspaceItem(ArmHandler):
    def get(self, subscription: str, group: str, name: str) -> None:
        ws = self.workspace(subscription, group, name)
        authorize(ws, self.caller, "read", "read", ws.arm_id)
        self.send_json(200, workspace_body(self.state, ws))


class ComputeList(ArmHandler):
    def get(self, subscription: str, group: str, name: str) -> None:
        ws = self.workspace(subscription, group, name)
        authorize(ws, self.caller, "read", "computes/read", ws.arm_id)
        prefix = compute_key(ws, "")
        values = [r["resource"] for k, r in self.state.section("computes").items() if k.startswith(prefix)]
        self.send_json(200, {"value": values})


class ComputeItem(ArmHandler):
    def get(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        authorize(ws, self.caller, "read", "computes/read", ws.arm_id)
        self.send_json(200, self.existing(ws, name)["resource"])

    def put(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        authorize(ws, self.caller, "write", "computes/write", ws.arm_id)
        check_name(name)
        body = self.json_body()
        props = (body.get("properties") or {}).get("properties") or {}
        if (body.get("properties") or {}).get("computeType") != "ComputeInstance":
            raise ServiceError(400, "BadRequest", "This emulator supports computeType 'ComputeInstance' only.")
        self.check_assignment(ws, props)
        self.check_unique(ws, name)
        self.check_quota(ws, props.get("vmSize", ""))
        caller = {"name": self.caller.name, "oid": self.caller.oid, "tid": self.caller.tenant_id}
        resource = new_compute(self.state, ws, name, body, caller)
        key = compute_key(ws, name)
        self.state.section("computes")[key] = {"resource": resource, "subscription": ws.subscription_id.lower(), "pending": None}
        op_id = new_operation(self.state, "create", key)
        machine(self.state).begin(key, "create", "Creating", op_id)
        self.send_json(201, resource, self.lro_headers(ws, op_id))

    def delete(self, subscription: str, group: str, ws_name: str, name: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        authorize(ws, self.caller, "delete", "computes/delete", ws.arm_id)
        record = self.record(ws, name)
        if record is None:
            self.send_json(204)
            return
        self.require_owner_or_admin(ws, record["resource"], "computes/delete")
        record["resource"]["properties"]["provisioningState"] = "Deleting"
        key = compute_key(ws, name)
        op_id = new_operation(self.state, "delete", key)
        machine(self.state).begin(key, "delete", "Deleting", op_id)
        self.send_json(202, None, self.lro_headers(ws, op_id))

    def check_assignment(self, ws: Workspace, props: dict[str, Any]) -> None:
        """Personal instances are assigned to the caller unless an admin creates one on behalf of someone."""
        settings = props.setdefault("personalComputeInstanceSettings", {})
        assigned = settings.setdefault("assignedUser", {"objectId": self.caller.oid, "tenantId": self.caller.tenant_id})
        if assigned.get("objectId", "").lower() != self.caller.oid.lower() and not is_admin(ws, self.caller):
            deny(self.caller, "computes/write", ws.arm_id)

    def check_unique(self, ws: Workspace, name: str) -> None:
        for key, record in self.state.section("computes").items():
            resource = record["resource"]
            if resource["name"].lower() != name.lower() or resource["location"] != ws.location:
                continue
            where = "this workspace" if key == compute_key(ws, name) else f"region '{ws.location}'"
            raise ServiceError(409, "Conflict", f"Compute name '{name}' is already in use in {where}; compute names are unique per region.")

    def check_quota(self, ws: Workspace, vm_size: str) -> None:
        size = self.state.config.vm_size(vm_size)
        if size is None:
            raise ServiceError(400, "BadRequest", f"The VM size '{vm_size}' is not supported in region '{ws.location}'.")
        limit = self.state.config.core_quotas.get(f"{ws.subscription_id}/{ws.location}/{size.family}", 0)
        used = cores_in_use(self.state, ws.subscription_id, ws.location, size.family)
        if used + size.cores > limit:
            raise ServiceError(
                400,
                "QuotaExceeded",
                f"Operation could not be completed as it results in exceeding approved {size.family} Cores quota. "
                f"Location: {ws.location}, Current Limit: {limit}, Current Usage: {used}, Additional Required: {size.cores}.",
            )


# action -> (states it may start from, the state it enters now)
ACTIONS = {
    "start": ({"Stopped"}, "Starting"),
    "stop": ({"Running", "JobRunning"}, "Stopping"),
    "restart": ({"Running", "JobRunning"}, "Restarting"),
}


class ComputeAction(ArmHandler):
    def post(self, subscription: str, group: str, ws_name: str, name: str, action: str) -> None:
        ws = self.workspace(subscription, group, ws_name)
        action = action[0].lower() + action[1:]
        authorize(ws, self.caller, "action", f"computes/{action}/action", ws.arm_id)
        record = self.existing(ws, name)
        resource = record["resource"]
        self.require_owner_or_admin(ws, resource, f"computes/{action}/action")
        if action == "updateIdleShutdownSetting":
            inner(resource)["idleTimeBeforeShutdown"] = self.json_body().get("idleTimeBeforeShutdown")
            self.state.mark_dirty()
            self.send_json(200)
            return
        if action == "updateDataMounts":
            inner(resource)["dataMounts"] = self.json_body() or []
            self.state.mark_dirty()
            self.send_json(200)
            return
        allowed, first = ACTIONS[action]
        current = inner(resource)["state"]
        if current not in allowed or record.get("pending"):
            raise ServiceError(
                409,
                "Conflict",
                f"Cannot {action} compute instance '{name}' while it is {current}; allowed from: {', '.join(sorted(allowed))}.",
            )
        key = compute_key(ws, name)
        op_id = new_operation(self.state, action, key)
        machine(self.state).begin(key, action, first, op_id)
        self.send_json(202, None, self.lro_headers(ws, op_id))


class OperationStatus(ArmHandler):
    def get(self, subscription: str, location: str, op_id: str) -> None:
        self.throttle(subscription, location)
        op = self.operation(op_id)
        body = {k: op[k] for k in ("id", "name", "status", "startTime", "endTime", "error") if k in op}
        self.send_json(200, body)

    def operation(self, op_id: str) -> dict[str, Any]:
        op = self.state.section("arm_operations").get(op_id)
        if op is None:
            raise ServiceError(404, "NotFound", f"Operation '{op_id}' was not found.")
        return op


class OperationResult(OperationStatus):
    def get(self, subscription: str, location: str, op_id: str) -> None:
        self.throttle(subscription, location)
        op = self.operation(op_id)
        if op["status"] == "InProgress":
            retry_after = self.state.config.timings.lro_retry_after
            headers = {"Location": self.request.full_url()}
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
            self.send_json(202, None, headers)
        elif op["status"] == "Failed":
            raise ServiceError(400, op["error"]["code"], op["error"]["message"])
        else:
            self.send_json(204)


def workspace_body(state: EmulatorState, ws: Workspace) -> dict[str, Any]:
    from .config import stable_id

    return {
        "id": ws.arm_id,
        "name": ws.name,
        "type": "Microsoft.MachineLearningServices/workspaces",
        "location": ws.location,
        "kind": "Default",
        "sku": {"name": "Basic", "tier": "Basic"},
        "identity": {"type": "SystemAssigned", "principalId": stable_id("ws-identity", ws.arm_id), "tenantId": state.config.tenants[0].id if state.config.tenants else ""},
        "tags": {},
        "properties": {
            "friendlyName": ws.name,
            "provisioningState": "Succeeded",
            "workspaceId": stable_id("workspace", ws.arm_id),
            "discoveryUrl": f"https://{ws.location}.api.azureml.ms/discovery",
            "storageAccount": f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/Microsoft.Storage/storageAccounts/st{ws.name.replace('-', '')[:20]}",
            "keyVault": f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/Microsoft.KeyVault/vaults/kv-{ws.name}",
            "applicationInsights": f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}/providers/Microsoft.Insights/components/ai-{ws.name}",
            "publicNetworkAccess": "Enabled",
        },
    }


# -- control ------------------------------------------------------------------------------------------
class ControlComputes(EmulatorHandler):
    def get(self) -> None:
        self.send_json(200, {"computes": [r["resource"] for r in self.state.section("computes").values()]})


def find_record(state: EmulatorState, name: str) -> tuple[str, dict[str, Any]]:
    for key, record in state.section("computes").items():
        if record["resource"]["name"].lower() == name.lower():
            return key, record
    raise ServiceError(404, "NotFound", f"No compute named {name}.")


class ControlComputeState(EmulatorHandler):
    """Force a compute into any of the 15 states (cancels a transition under way)."""

    def post(self, name: str) -> None:
        new_state = self.json_body().get("state")
        if new_state not in STATES:
            raise ServiceError(400, "BadRequest", f"state must be one of {STATES}")
        key, record = find_record(self.state, name)
        machine(self.state).cancel(key)
        record["pending"] = None
        set_state(self.state, record["resource"], new_state)
        self.state.mark_dirty()
        self.send_json(200, record["resource"])


class ControlFailNext(EmulatorHandler):
    """Make the next create or start of ``name`` (or of any compute) fail as CreateFailed/SetupFailed."""

    def post(self) -> None:
        spec = self.json_body()
        if spec.get("operation") not in ("create", "start") or spec.get("state") not in ("CreateFailed", "SetupFailed"):
            raise ServiceError(400, "BadRequest", "operation: create|start, state: CreateFailed|SetupFailed")
        key = str(spec.get("name") or "*").lower()
        machine(self.state).fail_next[key] = {
            "operation": spec["operation"],
            "state": spec["state"],
            "code": spec.get("code", "ComputeInstanceFailed"),
            "message": spec.get("message", "The compute instance failed (injected by the emulator)."),
        }
        self.send_json(200, {"armed": key})


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (W + r"$", WorkspaceItem, kw),
        (W + r"/computes$", ComputeList, kw),
        (W + r"/computes/([^/]+)$", ComputeItem, kw),
        (W + r"/computes/([^/]+)/(start|stop|restart|updateIdleShutdownSetting|updateDataMounts)$", ComputeAction, kw),
        (OPS + r"/computeOperationsStatus/([^/]+)$", OperationStatus, kw),
        (OPS + r"/computeOperationsResult/([^/]+)$", OperationResult, kw),
    ]


def control_routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (r"/_emulator/arm/computes", ControlComputes, kw),
        (r"/_emulator/arm/computes/([^/]+)/state", ControlComputeState, kw),
        (r"/_emulator/arm/fail-next", ControlFailNext, kw),
    ]


def on_start(state: EmulatorState) -> None:
    machine(state).resume()
