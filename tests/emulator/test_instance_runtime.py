"""The emulated compute-instance runtime: startup script, real Jupyter, managed identity, restarts."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.client import EmulatorControl
from support.arm_fixtures import FAST, arm_request, unique_name
from support.hub import wait_for

CONFIG = default_config()
WORKSPACE = CONFIG.workspaces[0]
ALICE = CONFIG.user("alice@contoso.example")
SCRIPT = """#!/bin/bash
set -e
echo "setting up $CI_NAME"
env > "$HOME/env.txt"
exit "${1:-0}"
"""


def start_emulator(data_dir: Path) -> tuple[EmulatorThread, EmulatorControl]:
    emu = EmulatorThread(config=copy.deepcopy(CONFIG), data_dir=data_dir, instance_runtime=True)
    emu.start()
    control = EmulatorControl(emu.endpoints["control"], emu.endpoints["ca_bundle"])
    control.update_settings(timings=FAST)
    return emu, control


@pytest.fixture
def running(tmp_path) -> Iterator[tuple[EmulatorThread, EmulatorControl]]:
    emu, control = start_emulator(tmp_path / "state")
    yield emu, control
    emu.stop()


def create(emu, control, name: str, exit_code: int = 0) -> None:
    body = {
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "computeType": "ComputeInstance",
            "properties": {
                "vmSize": "Standard_DS3_v2",
                "setupScripts": {"scripts": {"startupScript": {
                    "scriptSource": "inline", "scriptData": base64.b64encode(SCRIPT.encode()).decode(),
                    "scriptArguments": str(exit_code), "timeout": "1m",
                }}},
            },
        },
    }  # fmt: skip
    r = arm_request(emu, control, "PUT", f"{WORKSPACE.arm_id}/computes/{name}", json=body)
    assert r.status_code == 201, r.text


def settled(control, name: str) -> dict:
    def done():
        resource = control.arm_compute(name)
        return resource if resource["properties"]["properties"]["state"] in ("Running", "UserSetupFailed") else None

    return wait_for(done, 60, 0.2, f"{name} to settle")


def jupyter_answers(resource: dict, ca_bundle: str) -> bool:
    lab = next(a["endpointUri"] for a in resource["properties"]["properties"]["applications"] if a["displayName"] == "Jupyter Lab")
    try:
        return requests.get(lab.replace("/lab", "/api"), verify=ca_bundle, timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_running_instance_ran_its_script_and_serves_jupyter_with_a_clean_environment(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    resource = settled(control, name)
    assert resource["properties"]["properties"]["state"] == "Running"
    assert jupyter_answers(resource, emu.endpoints["ca_bundle"])
    machine = emu.state.instances.instances[resource["id"].lower()]
    env = dict(line.split("=", 1) for line in (machine.home / "env.txt").read_text().splitlines() if "=" in line)
    assert env["CI_NAME"] == name and env["HOME"] == str(machine.home) and env["MSI_ENDPOINT"].endswith("/MSI/auth")
    assert not {k for k in env if k.startswith(("JUPYTERHUB_", "AML_CLIENT", "PYTEST"))}  # nothing of the host's leaks in
    assert "setting up" in (machine.logs / "startup.log").read_text()


def test_failing_script_ends_in_user_setup_failed_with_its_output(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name, exit_code=3)
    resource = settled(control, name)
    props = resource["properties"]["properties"]
    assert props["state"] == "UserSetupFailed" and props["applications"] == []
    message = props["errors"][0]["error"]["message"]
    assert "exited with code 3" in message and f"setting up {name}" in message


def test_managed_identity_endpoint_answers_only_the_instance(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    resource = settled(control, name)
    machine = emu.state.instances.instances[resource["id"].lower()]
    url = f"{emu.endpoints['instances']}/MSI/auth"
    params = {"resource": f"api://{CONFIG.apps[0].client_id}", "api-version": "2017-09-01"}
    r = requests.get(url, params=params, headers={"secret": machine.msi_secret}, verify=emu.endpoints["ca_bundle"], timeout=10)
    assert r.status_code == 200
    claims = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert claims["xms_mirid"] == resource["id"] and claims["oid"] == resource["identity"]["principalId"]
    assert claims["aud"] == params["resource"] and claims["idtyp"] == "app"
    wrong = requests.get(url, params=params, headers={"secret": "guess"}, verify=emu.endpoints["ca_bundle"], timeout=10)
    assert wrong.status_code == 401


def test_stopping_stops_jupyter_and_a_restarted_emulator_brings_running_instances_back(tmp_path):
    emu, control = start_emulator(tmp_path / "state")
    stopped, kept = unique_name(), unique_name()
    for name in (stopped, kept):
        create(emu, control, name)
    first = {name: settled(control, name) for name in (stopped, kept)}
    assert arm_request(emu, control, "POST", f"{WORKSPACE.arm_id}/computes/{stopped}/stop").status_code == 202
    wait_for(lambda: control.arm_compute(stopped)["properties"]["properties"]["state"] == "Stopped", 30, 0.2, "stop")
    assert not jupyter_answers(first[stopped], emu.endpoints["ca_bundle"])
    emu.stop()

    emu, control = start_emulator(tmp_path / "state")
    try:
        revived = wait_for(lambda: (r := control.arm_compute(kept)) and jupyter_answers(r, emu.endpoints["ca_bundle"]) and r, 60, 0.3, "revival")
        assert revived["properties"]["properties"]["state"] == "Running"
        assert control.arm_compute(stopped)["properties"]["properties"]["state"] == "Stopped"
    finally:
        emu.stop()
