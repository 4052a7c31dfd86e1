"""The emulated Azure Databricks Jobs API: who may trigger a run, and how a run goes."""

from __future__ import annotations

import requests

DATABRICKS = "2ff814a6-3304-4ab8-85cb-cd0e6f879c1d/.default"


def call(emulator, ca_bundle, method, path, token, **kw):
    return requests.request(
        method, f"{emulator.endpoints['databricks']}{path}", headers={"Authorization": f"Bearer {token}"},
        verify=ca_bundle, timeout=30, **kw,
    )  # fmt: skip


def test_run_now_runs_as_the_user_and_terminates(emulator, ca_bundle, control):
    token = control.mint_token("alice@contoso.example", DATABRICKS)
    r = call(emulator, ca_bundle, "POST", "/api/2.1/jobs/run-now", token, json={"job_id": 1})
    assert r.status_code == 200
    run_id = r.json()["run_id"]
    run = call(emulator, ca_bundle, "GET", "/api/2.1/jobs/runs/get", token, params={"run_id": run_id}).json()
    assert run["state"]["life_cycle_state"] == "PENDING" and run["creator_user_name"] == "alice@contoso.example"
    control.advance_clock(5)
    run = call(emulator, ca_bundle, "GET", "/api/2.1/jobs/runs/get", token, params={"run_id": run_id}).json()
    assert run["state"] == {"life_cycle_state": "TERMINATED", "state_message": "", "result_state": "SUCCESS"}


def test_tokens_for_another_resource_are_refused(emulator, ca_bundle, control):
    storage = control.mint_token("alice@contoso.example", "https://storage.azure.com/.default")
    r = call(emulator, ca_bundle, "POST", "/api/2.1/jobs/run-now", storage, json={"job_id": 1})
    assert r.status_code == 401 and r.json()["error_code"] == "UNAUTHENTICATED"
    assert call(emulator, ca_bundle, "GET", "/api/2.1/jobs/list", "not-a-token").status_code == 401


def test_unknown_job_and_run_are_databricks_errors(emulator, ca_bundle, control):
    token = control.mint_token("bob@contoso.example", DATABRICKS)
    r = call(emulator, ca_bundle, "POST", "/api/2.1/jobs/run-now", token, json={"job_id": 999})
    assert r.status_code == 400 and r.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    r = call(emulator, ca_bundle, "GET", "/api/2.1/jobs/runs/get", token, params={"run_id": "0"})
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
