"""The emulated compute-instance runtime: startup script as root, Jupyter as azureuser in the instance's own
mount namespace, the managed-identity endpoint's rules, restarts."""

from __future__ import annotations

import base64
import copy
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.emulator.instances.sandbox import isolation_unavailable
from support.arm_fixtures import FAST, arm_request, unique_name
from support.hub import wait_for
from support.signin import instance_session

CONFIG = default_config()
WORKSPACE = CONFIG.workspaces[0]
ALICE = CONFIG.user("alice@contoso.example")
SCRIPT = """#!/bin/bash
set -e
echo "setting up $CI_NAME"
env > "$HOME/env.txt"
id -un > "$HOME/whoami.txt"
home=$(getent passwd "$CI_LOCAL_UBUNTU_USER" | cut -d: -f6)
echo "$CI_NAME" > "$home/written-by-the-script.txt"
exit "${1:-0}"
"""
# Tests of what only root can set up (a notebook user, a mount namespace per instance); CI runs as root.
needs_root = pytest.mark.skipif(isolation_unavailable() is not None, reason=f"not run: {isolation_unavailable()}")


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


def create(emu, control, name: str, exit_code: int = 0, sso: bool | None = None) -> None:
    body = {
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "computeType": "ComputeInstance",
            "properties": {
                "vmSize": "Standard_DS3_v2",
                "personalComputeInstanceSettings": {"assignedUser": {"objectId": ALICE.oid, "tenantId": ALICE.tenant_id}},
                **({} if sso is None else {"enableSSO": sso}),
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


def machine_of(emu, resource: dict):
    return emu.state.instances.instances[resource["id"].lower()]


def script_env(machine) -> dict[str, str]:
    home = machine.root_home if machine.namespace else machine.home
    return dict(line.split("=", 1) for line in (home / "env.txt").read_text().splitlines() if "=" in line)


def test_running_instance_ran_its_script_and_serves_jupyter_with_a_clean_environment(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    resource = settled(control, name)
    assert resource["properties"]["properties"]["state"] == "Running"
    assert jupyter_answers(resource, emu.endpoints["ca_bundle"])
    machine = machine_of(emu, resource)
    env = script_env(machine)
    # The environment Azure ML gives a setup script.
    assert env["CI_NAME"] == name and env["MSI_ENDPOINT"].endswith("/MSI/auth") and env["MSI_SECRET"]
    assert env["CI_WORKSPACE"] == WORKSPACE.name and env["CI_RESOURCE_GROUP"] == WORKSPACE.resource_group
    assert env["DEFAULT_IDENTITY_CLIENT_ID"] == machine.client_id != resource["identity"]["principalId"]
    assert not {k for k in env if k.startswith(("JUPYTERHUB_", "AML_CLIENT", "PYTEST"))}  # nothing of the host's leaks in
    assert "setting up" in (machine.logs / "startup.log").read_text()


@needs_root
def test_script_runs_as_root_and_jupyter_as_azureuser_in_a_home_of_its_own(running):
    emu, control = running
    first, second = unique_name(), unique_name()
    for name in (first, second):
        create(emu, control, name)
    machines = {name: machine_of(emu, settled(control, name)) for name in (first, second)}
    azureuser = pwd.getpwnam("azureuser")
    for name, machine in machines.items():
        env = script_env(machine)
        assert (machine.root_home / "whoami.txt").read_text().strip() == "root"
        assert env["HOME"] == "/root" and env["CI_LOCAL_UBUNTU_USER"] == "azureuser"
        # The notebook user's home, as pwd names it, is this instance's own directory (bind-mounted).
        assert (machine.home / "written-by-the-script.txt").read_text().strip() == name
        assert machine.home.stat().st_uid == azureuser.pw_uid and machine.home.stat().st_mode & 0o077 == 0
        status = dict(line.split(":", 1) for line in open(f"/proc/{machine.server.pid}/status").read().splitlines())
        assert int(status["Uid"].split()[0]) == azureuser.pw_uid  # Jupyter is not root
    assert not os.path.exists("/root/env.txt") and not os.path.exists("/home/azureuser/written-by-the-script.txt")


def test_failing_script_ends_in_user_setup_failed_with_its_output(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name, exit_code=3)
    resource = settled(control, name)
    props = resource["properties"]["properties"]
    assert props["state"] == "UserSetupFailed" and props["applications"] == []
    message = props["errors"][0]["error"]["message"]
    assert "exited with code 3" in message and f"setting up {name}" in message


def msi(emu, machine, **params) -> requests.Response:
    query = {"resource": f"api://{CONFIG.apps[0].client_id}", "api-version": "2017-09-01", **params}
    url = f"{emu.endpoints['instances']}/MSI/auth"
    return requests.get(url, params=query, headers={"secret": machine.msi_secret}, verify=emu.endpoints["ca_bundle"], timeout=10)


def claims_of(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return jwt.decode(response.json()["access_token"], options={"verify_signature": False})


def test_identity_endpoint_answers_for_the_identity_only_with_its_client_id(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    resource = settled(control, name)
    machine = machine_of(emu, resource)
    identity = claims_of(msi(emu, machine, clientid=machine.client_id))
    assert identity["xms_mirid"] == resource["id"] and identity["oid"] == resource["identity"]["principalId"]
    assert identity["appid"] == machine.client_id and identity["aud"] == f"api://{CONFIG.apps[0].client_id}"
    # SSO is on by default: without a client id the endpoint answers for the signed-in (assigned) user.
    user = claims_of(msi(emu, machine))
    assert "xms_mirid" not in user and user["oid"] == ALICE.oid and user["upn"] == ALICE.username
    assert msi(emu, machine, clientid="00000000-0000-0000-0000-000000000000").status_code == 400
    wrong = requests.get(f"{emu.endpoints['instances']}/MSI/auth", params={"resource": "https://storage.azure.com"},
                         headers={"secret": "guess"}, verify=emu.endpoints["ca_bundle"], timeout=10)  # fmt: skip
    assert wrong.status_code == 401


def test_identity_endpoint_without_sso_answers_for_the_identity(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name, sso=False)
    resource = settled(control, name)
    assert claims_of(msi(emu, machine_of(emu, resource)))["xms_mirid"] == resource["id"]


def test_idtyp_only_for_an_app_registration_that_asks_for_it(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    machine = machine_of(emu, settled(control, name))
    assert "idtyp" not in claims_of(msi(emu, machine, clientid=machine.client_id))  # the demo hub app does not ask
    emu.state.config.apps[0].optional_claims = ["idtyp"]
    try:
        assert claims_of(msi(emu, machine, clientid=machine.client_id))["idtyp"] == "app"
        storage = claims_of(msi(emu, machine, clientid=machine.client_id, resource="https://storage.azure.com"))
        assert "idtyp" not in storage  # only for the app that asks
    finally:
        emu.state.config.apps[0].optional_claims = []


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


def test_a_reset_shuts_down_every_running_machine(running):
    """Tests reset the shared emulator between them: a running instance's Jupyter (and its namespace
    holder) must end with the reset, not outlive the test run as an orphan process."""
    emu, control = running
    name = unique_name()
    create(emu, control, name)
    resource = settled(control, name)
    machine = machine_of(emu, resource)
    pids = [machine.server.pid] + ([machine.namespace.holder.pid] if machine.namespace is not None else [])
    control.reset()
    wait_for(lambda: not any(alive(pid) for pid in pids), 30, 0.2, "the machine's processes to end")
    assert not jupyter_answers(resource, emu.endpoints["ca_bundle"])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet reaped, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_gateway_lets_in_only_a_user_whose_role_grants_application_access(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)  # assigned to alice (AzureML Compute Operator: computes/*)
    resource = settled(control, name)
    lab = f"https://127.0.0.1:{machine_of(emu, resource).port}/lab"
    ca = emu.endpoints["ca_bundle"]
    assert instance_session(lab, ALICE.username, ca)[1].status_code == 200
    control.arm_assign_role(WORKSPACE.name, ALICE.username, "Reader")  # may read the instance, not open it
    refused = instance_session(lab, ALICE.username, ca)[1]
    assert refused.status_code == 403 and "computes/applicationaccess/action" in refused.text
    control.arm_assign_role(WORKSPACE.name, ALICE.username, "Compute Instance User (custom)")  # the documented custom role
    assert instance_session(lab, ALICE.username, ca)[1].status_code == 200


def test_the_agent_gets_the_instance_identity_not_the_signed_in_user(running):
    emu, control = running
    name = unique_name()
    create(emu, control, name)  # SSO on (the default)
    resource = settled(control, name)
    machine = machine_of(emu, resource)
    runtime = emu.state.instances
    code = (
        "import jwt; from aml_jupyterhub.instance.hub_token import instance_identity_token; "
        f"print(jwt.decode(instance_identity_token('api://{CONFIG.apps[0].client_id}'), options={{'verify_signature': False}}).get('xms_mirid'))"
    )
    done = subprocess.run(
        runtime.user_command(machine, [sys.executable, "-c", code]), env=runtime.environment(machine), cwd=machine.home,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == resource["id"]


def test_software_below_a_closed_directory_is_reached_through_a_mask(tmp_path, monkeypatch):
    """A checkout in a ``mktemp -d`` folder (0700, as CI may clone into) stays runnable by azureuser."""
    from aml_jupyterhub.emulator.instances import sandbox

    closed = tmp_path / "ci-clone"
    checkout = closed / "p"
    checkout.mkdir(parents=True)
    closed.chmod(0o700)
    tmp_path.chmod(0o755)
    monkeypatch.setattr(sandbox, "software", lambda: {checkout, checkout / ".venv"})
    monkeypatch.setattr(sandbox, "closed_ancestor", lambda path: closed if path.is_relative_to(closed) else None)
    laid = {covered: (mask, kept) for mask, covered, kept in sandbox.masks(tmp_path / "root-home", tmp_path / "masks")}
    mask, kept = laid[closed]
    assert kept == ["p"] and mask.stat().st_mode & 0o777 == 0o711  # the nested .venv comes with p
    root_mask, root_kept = laid[sandbox.ROOT_HOME]
    assert root_mask == tmp_path / "root-home" and root_kept == [] and root_mask.stat().st_mode & 0o777 == 0o700
    assert closed.stat().st_mode & 0o777 == 0o700  # the host's modes are never changed


def test_closed_ancestor_is_the_outermost_directory_others_cannot_traverse(tmp_path):
    from aml_jupyterhub.emulator.instances.sandbox import closed_ancestor

    outer, inner = tmp_path / "a", tmp_path / "a" / "b"
    (inner / "c").mkdir(parents=True)
    inner.chmod(0o700)
    assert closed_ancestor(inner / "c") in (inner, *[p for p in inner.parents if not p.stat().st_mode & 0o001])
    outer.chmod(0o700)
    found = closed_ancestor(inner / "c")
    assert found is not None and found != inner and inner.is_relative_to(found)
