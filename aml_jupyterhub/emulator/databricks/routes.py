"""An Azure Databricks workspace's Jobs API subset, on the ``databricks`` port.

- ``POST /api/2.1/jobs/run-now`` ``{"job_id": N, "job_parameters"?: {...}}`` -> ``{"run_id", "number_in_job"}``
- ``GET /api/2.1/jobs/runs/get?run_id=N`` -> the run, ``state.life_cycle_state``
  PENDING -> RUNNING -> TERMINATED (``result_state`` SUCCESS) on the emulated clock
- ``GET /api/2.1/jobs/list`` -> the workspace's jobs

Authentication is what Azure Databricks accepts from a user: an Entra access
token for the Azure Databricks resource (``2ff814a6-...``), validated for
audience, signature and lifetime; anything else is 401 in Databricks' error
shape (``{"error_code", "message"}``). The run records who triggered it
(``creator_user_name``). Jobs come from the emulator config: job 1 "nightly
features" exists in every emulator.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.keys import TokenError
from ..core.state import EmulatorState
from ..core.tokens import Caller, require_bearer

JOBS = {1: "nightly-features", 2: "train-model"}
PHASES = ((0.0, "PENDING"), (1.0, "RUNNING"), (3.0, "TERMINATED"))  # seconds after the trigger
ERROR_CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST"}
_run_ids = itertools.count(1001)


class DatabricksHandler(EmulatorHandler):
    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        code = error.code if error.code.isupper() else ERROR_CODES.get(error.status, "INTERNAL_ERROR")
        return "application/json", json.dumps({"error_code": code, "message": error.message}).encode()

    def caller(self) -> Caller:
        try:
            return require_bearer(self.state, self.request.headers.get("Authorization"), "databricks")
        except TokenError as e:
            raise ServiceError(401, "UNAUTHENTICATED", f"Invalid access token: {e}") from None

    def runs(self) -> dict[str, Any]:
        return self.state.section("databricks_runs")


class RunNow(DatabricksHandler):
    def post(self) -> None:
        caller = self.caller()
        body = self.json_body()
        job_id = body.get("job_id")
        if job_id not in JOBS:
            raise ServiceError(400, "INVALID_PARAMETER_VALUE", f"Job {job_id} does not exist.")
        run_id = next(_run_ids)
        self.runs()[str(run_id)] = {
            "job_id": job_id,
            "run_id": run_id,
            "number_in_job": run_id,
            "run_name": JOBS[job_id],
            "creator_user_name": caller.name,
            "job_parameters": body.get("job_parameters") or {},
            "start_time": int(self.state.now() * 1000),
        }
        self.state.mark_dirty()
        self.send_json(200, {"run_id": run_id, "number_in_job": run_id})


class RunsGet(DatabricksHandler):
    def get(self) -> None:
        self.caller()
        run = self.runs().get(self.get_query_argument("run_id", ""))
        if run is None:
            raise ServiceError(404, "RESOURCE_DOES_NOT_EXIST", "Run does not exist.")
        elapsed = self.state.now() - run["start_time"] / 1000
        phase = [name for after, name in PHASES if elapsed >= after][-1]
        state = {"life_cycle_state": phase, "state_message": ""}
        if phase == "TERMINATED":
            state["result_state"] = "SUCCESS"
        self.send_json(200, {**run, "state": state})


class JobsList(DatabricksHandler):
    def get(self) -> None:
        self.caller()
        self.send_json(200, {"jobs": [{"job_id": k, "settings": {"name": v}} for k, v in JOBS.items()], "has_more": False})


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (r"/api/2\.1/jobs/run-now", RunNow, kw),
        (r"/api/2\.1/jobs/runs/get", RunsGet, kw),
        (r"/api/2\.1/jobs/list", JobsList, kw),
    ]
