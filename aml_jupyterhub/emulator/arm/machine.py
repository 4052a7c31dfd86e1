"""Long-running operations and the compute-instance state machine, on configurable timings.

Each transition is a list of steps ``(state to enter, timing name)`` run with
``loop.call_later``; the delay is read from ``config.timings`` when a step is
scheduled, so a test can change timings at any moment. The step under way and
when it is due are persisted with the record, so an emulator restarted on its
data dir finishes what was under way (:meth:`ComputeMachine.resume`).

Operations (``state.section("arm_operations")``) are what the
``Azure-AsyncOperation`` and ``Location`` URLs report: InProgress, then
Succeeded, Failed (with the error) or Canceled (superseded, e.g. by a delete).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..core.instance_host import StartupFailed, inner, startup_script
from ..core.keys import new_id
from ..core.state import EmulatorState
from .model import iso, set_last_operation, set_state

GONE = "<gone>"
OPERATION_TTL = 3600.0  # finished operations are forgotten after an hour
# How a failed operation shows in lastOperation.operationStatus.
FAILED_STATUS = {"create": "CreateFailed", "start": "StartFailed", "stop": "StopFailed", "restart": "RestartFailed", "delete": "DeleteFailed"}

Plan = list[tuple[str, str]]
# operation -> the steps after its first (immediate) state: (state to enter, timing name)
PLANS: dict[str, Plan] = {
    "create": [("Running", "create")],
    "create+setup": [("SettingUp", "create"), ("Running", "setup")],
    "start": [("Running", "start")],
    "stop": [("Stopped", "stop")],
    "restart": [("Running", "restart")],
    "delete": [(GONE, "delete")],
}


def plan_for(operation: str, resource: dict[str, Any]) -> Plan:
    """The steps of ``operation``; creating with setup scripts passes through SettingUp."""
    if operation == "create" and inner(resource).get("setupScripts"):
        operation = "create+setup"
    return list(PLANS[operation])


# -- operations ----------------------------------------------------------------------------------
def new_operation(state: EmulatorState, kind: str, compute: str, subscription: str, location: str) -> str:
    """Record an InProgress operation; returns its id."""
    operations = state.section("arm_operations")
    forget_old_operations(state, operations)
    op_id = new_id()
    operations[op_id] = {
        "id": f"/subscriptions/{subscription}/providers/Microsoft.MachineLearningServices/locations/{location}/computeOperationsStatus/{op_id}",
        "name": op_id,
        "kind": kind,
        "compute": compute,
        "subscription": subscription.lower(),
        "status": "InProgress",
        "startTime": iso(state.now()),
    }
    state.mark_dirty()
    return op_id


def forget_old_operations(state: EmulatorState, operations: dict[str, Any]) -> None:
    cutoff = state.now() - OPERATION_TTL
    for op_id in [k for k, op in operations.items() if op.get("ended", cutoff + 1) < cutoff]:
        del operations[op_id]


def finish_operation(state: EmulatorState, op_id: str | None, status: str = "Succeeded", error: dict[str, str] | None = None) -> None:
    """End an operation as Succeeded, Failed (with ``error``) or Canceled."""
    op = state.section("arm_operations").get(op_id or "")
    if op is None or op["status"] != "InProgress":
        return
    op.update(status=status, endTime=iso(state.now()), ended=state.now())
    if error:
        op["error"] = error
    state.mark_dirty()


# -- the state machine ---------------------------------------------------------------------------
class ComputeMachine:
    """Drives compute records through their transitions with ``loop.call_later``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.timers: dict[str, asyncio.TimerHandle] = {}
        # compute name (lower) or "*" -> {"operation", "state", "code", "message"}
        self.fail_next: dict[str, dict[str, str]] = {}

    @property
    def records(self) -> dict[str, Any]:
        return self.state.section("computes")

    def begin(self, key: str, operation: str, first_state: str, op_id: str, trigger: str = "User") -> None:
        """Enter ``first_state`` now and schedule the rest of ``operation`` (superseding one under way)."""
        record = self.records[key]
        self.abandon(key)
        resource = record["resource"]
        set_state(self.state, resource, first_state)
        set_last_operation(self.state, resource, operation, "InProgress", trigger)
        if operation == "delete":
            resource["properties"]["provisioningState"] = "Deleting"
        record["pending"] = {"operation": operation, "steps": plan_for(operation, resource), "op": op_id, "trigger": trigger}
        self._schedule_next(key)

    def abandon(self, key: str) -> None:
        """Stop the transition under way (its operation ends Canceled); the state stays as it is."""
        self.cancel(key)
        record = self.records.get(key)
        if record and record.get("pending"):
            finish_operation(self.state, record["pending"]["op"], "Canceled")
            record["pending"] = None
            self.state.mark_dirty()

    def settle(self, key: str) -> None:
        """Run the remaining steps of ``key``'s transition now (for tests with long timings)."""
        self.cancel(key)
        while key in self.records and self.records[key].get("pending") and not self.records[key]["pending"].get("bringing_up"):
            self._advance(key, reschedule=False)

    def _schedule_next(self, key: str) -> None:
        record = self.records.get(key)
        if record is None or not record.get("pending"):
            return
        _, timing = record["pending"]["steps"][0]
        delay = float(getattr(self.state.config.timings, timing))
        record["pending"]["due"] = self.state.now() + delay
        self.state.mark_dirty()
        self._arm_timer(key, delay)

    def _arm_timer(self, key: str, delay: float) -> None:
        self.cancel(key)
        self.timers[key] = asyncio.get_running_loop().call_later(max(0.0, delay), self._advance, key)

    def _advance(self, key: str, reschedule: bool = True) -> None:
        self.timers.pop(key, None)
        record = self.records.get(key)
        if record is None or not record.get("pending"):
            return
        pending = record["pending"]
        target, _ = pending["steps"].pop(0)
        failure = self._injected_failure(record["resource"]["name"], pending["operation"], target)
        runtime = self.state.instances
        if target == GONE:
            resource = self.records.pop(key)["resource"]
            finish_operation(self.state, pending["op"])
            if runtime is not None:
                asyncio.get_running_loop().create_task(runtime.forget(resource))
        elif target == "Running" and runtime is not None and not failure:
            self._bring_up(key, record, runtime)
            return
        elif failure:
            self._fail(record, failure)
        else:
            set_state(self.state, record["resource"], target)
            if not pending["steps"]:
                self._succeed(record)
        self.state.mark_dirty()
        if reschedule:
            self._schedule_next(key)

    def _bring_up(self, key: str, record: dict[str, Any], runtime: Any) -> None:
        """Run the instance's startup configuration and Jupyter before it is Running (emulated runtime)."""
        pending, resource = record["pending"], record["resource"]
        pending["bringing_up"] = True
        if startup_script(resource):
            set_state(self.state, resource, "UserSettingUp")
        task = asyncio.get_running_loop().create_task(runtime.bring_up(resource))
        task.add_done_callback(lambda t: self._brought_up(key, pending, t))

    def _brought_up(self, key: str, pending: dict[str, Any], task: asyncio.Task) -> None:
        record = self.records.get(key)
        if record is None or record.get("pending") is not pending:
            return  # superseded (stopped or deleted meanwhile); that transition shuts the machine down
        error = None if task.cancelled() else task.exception()
        if error is not None:
            message = str(error) if isinstance(error, StartupFailed) else f"The instance failed to start: {error!r}"
            self._fail(record, {"state": "UserSetupFailed", "code": "UserSetupFailed", "message": message})
        else:
            set_state(self.state, record["resource"], "Running")
            if not pending["steps"]:
                self._succeed(record)
        self.state.mark_dirty()
        self._schedule_next(key)

    def _succeed(self, record: dict[str, Any]) -> None:
        pending, resource = record["pending"], record["resource"]
        resource["properties"]["provisioningState"] = "Succeeded"
        set_last_operation(self.state, resource, pending["operation"], "Succeeded", pending.get("trigger", "User"))
        record["pending"] = None
        finish_operation(self.state, pending["op"])

    def _injected_failure(self, name: str, operation: str, target: str) -> dict[str, str] | None:
        """An armed failure for this step: CreateFailed at the first step, SetupFailed on reaching Running."""
        for key in (name.lower(), "*"):
            spec = self.fail_next.get(key)
            if spec and spec["operation"] == operation and (target == "Running" or spec["state"] == "CreateFailed"):
                return self.fail_next.pop(key)
        return None

    def _fail(self, record: dict[str, Any], failure: dict[str, str]) -> None:
        pending, resource = record["pending"], record["resource"]
        error = {"code": failure["code"], "message": failure["message"]}
        set_state(self.state, resource, failure["state"])
        inner(resource)["errors"] = [{"error": error}]
        failed_provisioning = failure["state"] == "CreateFailed"
        resource["properties"]["provisioningState"] = "Failed" if failed_provisioning else "Succeeded"
        resource["properties"]["provisioningErrors"] = [{"error": error}] if failed_provisioning else None
        set_last_operation(self.state, resource, pending["operation"], FAILED_STATUS[pending["operation"]], pending.get("trigger", "User"))
        record["pending"] = None
        finish_operation(self.state, pending["op"], "Failed", error)

    def resume(self) -> None:
        """After a restart on a data dir: finish the transitions that were under way."""
        for key, record in self.records.items():
            pending = record.get("pending")
            if pending and pending.get("bringing_up") and self.state.instances is not None:
                self._bring_up(key, record, self.state.instances)
            elif pending:
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
    """The state's one machine (created on first use, dropped by ``state.reset()``)."""
    if "compute_machine" not in state.runtime:
        state.runtime["compute_machine"] = ComputeMachine(state)
    return state.runtime["compute_machine"]


def cancel_timers(state: EmulatorState) -> None:
    """A ``state.reset_hooks`` entry: stop the current machine's timers before the state is cleared."""
    current = state.runtime.get("compute_machine")
    if current is not None:
        current.cancel_all()
