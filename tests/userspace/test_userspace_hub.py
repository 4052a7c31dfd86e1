"""The private user space end to end: a real hub and proxy, the emulated Azure, and emulated instances
that run their startup script and a real Jupyter server."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.storage.fileshare import ShareClient

from aml_jupyterhub.auth.handlers import BROKER_SCOPE
from aml_jupyterhub.emulator.instances.sandbox import isolation_unavailable
from aml_jupyterhub.userspace import share_name
from support.fuse import eventually, requires_fuse
from support.signin import instance_session
from support.aml_hub import ALICE, BOB, CAROL, DIRECTORY, aml_hub, instances_of, progress_events, signed_in, spawn, stop
from support.own_tokens import own_token

STORAGE = DIRECTORY.storage_accounts[0]
HUB_ID = "userspace"
FOLDER = "files"  # c.UserSpace.share_folder: what the instances mount
SETTLE = 15  # seconds: write-back after close (1 s) plus the upload, and the mount's directory cache (10 s)
pytestmark = requires_fuse  # every instance mounts its user's share for real
# What only a root emulator sets up (azureuser, a mount namespace per instance); CI runs as root.
needs_root = pytest.mark.skipif(isolation_unavailable() is not None, reason=f"not run: {isolation_unavailable()}")


@pytest.fixture(scope="module")
def hub(emulator, instances, tmp_path_factory):
    for user in (ALICE, BOB, CAROL):  # a clean slate: other modules' hubs may have made these users' shares
        with contextlib.suppress(ResourceNotFoundError):
            share_client(emulator, share_name(user.username, user.oid), emulator.endpoints["ca_bundle"]).delete_share()
    extra = """
c.AMLSpawner.stop_wait_seconds = 30
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}
c.AMLSpawner.reconcile_interval_seconds = 0
c.JupyterHub.named_server_limit_per_user = 0
"""
    env = {"AML_USERSPACE_ACCOUNT_KEY": STORAGE.key}
    yield from aml_hub(emulator, tmp_path_factory.mktemp("userspace-hub"), HUB_ID, extra, env)


def computes_of(control, username: str, server: str = "") -> list[dict]:
    return instances_of(control, HUB_ID, username, server)


def machine(instances, compute: dict):
    return instances.instances[compute["id"].lower()]


def on_instance(instances, compute: dict, relative: str) -> Path:
    """Where the host reads ``~azureuser/<relative>`` as the instance sees it (its mounts included)."""
    m = machine(instances, compute)
    return m.view(m.inside(m.home / relative))


def jupyter(instances, compute: dict, ca_bundle: str) -> str:
    """The instance's own Jupyter server (what the Azure ML gateway would front)."""
    return f"https://127.0.0.1:{machine(instances, compute).port}"


def write_through_mount(base: str, user, path: str, text: str, ca_bundle: str) -> None:
    """Save a file with the instance's Jupyter as ``user``'s browser would: through the gateway's sign-in,
    the JupyterLab page first (its _xsrf cookie), then the contents API."""
    session, page = instance_session(f"{base}/lab", user.username, ca_bundle)
    assert page.status_code == 200, page.text[:300]
    headers = {"X-XSRFToken": session.cookies["_xsrf"]}
    body = {"type": "file", "format": "text", "content": text}
    r = session.put(f"{base}/api/contents/{path}", json=body, headers=headers, verify=ca_bundle, timeout=30)
    assert r.status_code in (200, 201), r.text


def read_through_mount(base: str, user, path: str, ca_bundle: str) -> requests.Response:
    session, page = instance_session(f"{base}/lab", user.username, ca_bundle)
    assert page.status_code == 200, page.text[:300]
    return session.get(f"{base}/api/contents/{path}", params={"content": "1"}, verify=ca_bundle, timeout=30)


def share_client(emulator, share: str, ca_bundle: str, credential=None) -> ShareClient:
    return ShareClient(
        f"{emulator.endpoints['files']}/{STORAGE.name}",
        share,
        credential=credential or {"account_name": STORAGE.name, "account_key": STORAGE.key},
        connection_verify=ca_bundle,
        retry_total=0,
    )


def instance_config(hub, session: requests.Session, username: str, compute: str) -> requests.Response:
    """What an instance asks for, with a broker-scoped token the user made for themself."""
    token = own_token(hub, session, username, scopes=[f"{BROKER_SCOPE}!user={username}"])
    return hub.api("GET", f"/aml/instance-config?compute={compute}", token=token)


def test_files_follow_the_user_across_workspaces_and_a_recreated_instance(hub, fast, emulator, instances, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username)  # profile "small" in ws-research
    [research] = computes_of(fast, ALICE.username)
    share = share_name(ALICE.username, ALICE.oid)
    assert os.path.ismount(on_instance(instances, research, "userfiles"))  # a real FUSE mount (rclone) of the share, over FileREST
    write_through_mount(jupyter(instances, research, ca_bundle), ALICE, "userfiles/notes.txt", "written on research\n", ca_bundle)
    rest = share_client(emulator, share, ca_bundle).get_file_client(f"{FOLDER}/notes.txt")
    assert eventually(lambda: rest.exists() and rest.download_file().readall(), SETTLE, "uploaded") == b"written on research\n"

    spawn(hub, ALICE.username, {"profile": "memory"}, server="big")  # ws-analytics
    [analytics] = computes_of(fast, ALICE.username, "big")
    assert "/workspaces/ws-analytics/" in analytics["id"]
    r = read_through_mount(jupyter(instances, analytics, ca_bundle), ALICE, "userfiles/notes.txt", ca_bundle)
    assert r.status_code == 200 and r.json()["content"] == "written on research\n"
    stop(hub, ALICE.username, "big")

    stop(hub, ALICE.username)
    spawn(hub, ALICE.username, {"profile": "small", "recreate": True})
    [recreated] = computes_of(fast, ALICE.username)
    assert recreated["name"] == research["name"] and recreated["properties"]["createdOn"] != research["properties"]["createdOn"]
    assert not (machine(instances, recreated).home / "notes-from-old-disk").exists()
    r = read_through_mount(jupyter(instances, recreated, ca_bundle), ALICE, "userfiles/notes.txt", ca_bundle)
    assert r.status_code == 200 and r.json()["content"] == "written on research\n"
    stop(hub, ALICE.username)


def test_share_is_created_once_with_quota_and_owner(hub, fast, emulator, ca_bundle):
    props = share_client(emulator, share_name(ALICE.username, ALICE.oid), ca_bundle).get_share_properties()
    assert props.quota == 10
    assert props.metadata["owner_oid"] == ALICE.oid
    shares = [s for s in fast.files_shares(STORAGE.name) if s["name"] == share_name(ALICE.username, ALICE.oid)]
    assert len(shares) == 1  # three spawns above, one share


def test_another_user_cannot_reach_the_share(hub, fast, emulator, instances, ca_bundle):
    session = signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username)
    [bobs] = computes_of(fast, BOB.username)
    alice_share = share_name(ALICE.username, ALICE.oid)
    assert os.path.ismount(on_instance(instances, bobs, "userfiles"))
    r = read_through_mount(jupyter(instances, bobs, ca_bundle), BOB, "userfiles/notes.txt", ca_bundle)
    assert r.status_code == 404  # alice's file is not in bob's space

    access = instance_config(hub, session, BOB.username, bobs["name"]).json()["userspace"]
    assert access["mode"] == "sas" and access["share_url"].endswith("/" + share_name(BOB.username, BOB.oid))
    with pytest.raises(ClientAuthenticationError):
        share_client(emulator, alice_share, ca_bundle, credential=access["sas"]).get_file_client(f"{FOLDER}/notes.txt").download_file()
    # ...and bob cannot ask for the configuration of alice's instance.
    [alices] = computes_of(fast, ALICE.username)
    assert instance_config(hub, session, BOB.username, alices["name"]).status_code == 404
    stop(hub, BOB.username)


def test_instance_token_exchange_refuses_what_is_not_an_instance_of_this_hub(hub, fast, ca_bundle):
    url = f"{hub.url}/hub/api/aml/instance-token"
    assert requests.post(url, json={}, timeout=30).status_code == 400
    user_token = fast.mint_token(ALICE.username, "https://storage.azure.com/.default")
    refused = requests.post(url, json={"identity_token": user_token}, timeout=30)
    assert refused.status_code == 403  # a user's token is not an instance identity
    assert "Instance identity refused" in refused.json()["message"]
    forged = user_token.rsplit(".", 1)[0] + ".c2lnbmF0dXJl"
    assert requests.post(url, json={"identity_token": forged}, timeout=30).status_code == 403


def test_no_secret_in_instance_configuration_arguments_or_logs(hub, fast, emulator, instances, ca_bundle):
    session = signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username)
    [compute] = computes_of(fast, CAROL.username)
    access = instance_config(hub, session, CAROL.username, compute["name"]).json()["userspace"]
    sas_sig = dict(p.split("=", 1) for p in access["sas"].split("&"))["sig"]
    hub_token = json.loads((machine(instances, compute).home / ".aml-jupyterhub" / "hub-token.json").read_text())["token"]
    secrets_ = [sas_sig, STORAGE.key, hub_token]

    stored = json.dumps(fast.arm_compute(compute["name"]))
    script = base64.b64decode(compute["properties"]["properties"]["setupScripts"]["scripts"]["startupScript"]["scriptData"]).decode()
    m = machine(instances, compute)
    arguments = " ".join(
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        for pid in os.listdir("/proc") if pid.isdigit() and Path(f"/proc/{pid}/cmdline").exists()
    )  # fmt: skip
    logs = hub.logs() + "".join(p.read_text(errors="replace") for p in m.logs.iterdir())
    assert "aml_jupyterhub.instance start" in script and "share" not in script.lower().replace("user's private share", "")
    for secret in secrets_:
        assert secret not in stored and secret not in script and secret not in arguments and secret not in logs
    token_file = m.home / ".aml-jupyterhub" / "hub-token.json"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    assert oct(token_file.parent.stat().st_mode & 0o777) == "0o700"
    stop(hub, CAROL.username)


@needs_root
def test_what_the_user_needs_is_in_the_notebook_users_home_never_in_roots(hub, fast, instances, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username, server="homes")  # profile "small": user space and Spark kernels
    [compute] = computes_of(fast, CAROL.username, "homes")
    m = machine(instances, compute)
    azureuser = pwd.getpwnam("azureuser")
    needed = [".aml-jupyterhub/hub-token.json", ".aml-jupyterhub/settings.json", ".local/share/jupyter/kernels/pysparkkernel/kernel.json",
              "userfiles/examples/01-user-space.ipynb", f"userfiles/.sparkmagic/{compute['name']}/config.json"]  # fmt: skip
    for relative in needed:
        path = on_instance(instances, compute, relative)
        assert path.stat().st_uid == azureuser.pw_uid, relative
        assert path.stat().st_mode & 0o077 == 0, f"{relative} is readable by others: {oct(path.stat().st_mode)}"
    assert os.lstat(on_instance(instances, compute, ".sparkmagic")).st_uid == azureuser.pw_uid
    assert os.stat(on_instance(instances, compute, "userfiles")).st_uid == azureuser.pw_uid  # the mount point
    leaked = [str(p.relative_to(m.root_home)) for p in m.root_home.rglob("*") if p.name in (".aml-jupyterhub", ".sparkmagic", "kernels", "userfiles")]
    assert leaked == []  # nothing the user needs in /root
    stop(hub, CAROL.username, "homes")


def test_storage_outage_during_spawn_is_clear_and_leaves_no_instance(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    # Slow and failing, so the failure lands after the API's slow-spawn point: seen through progress.
    fast.inject(service="files", status=503, error_code="ServerBusy", latency=1.5, count=100)
    r = hub.api("POST", f"/users/{CAROL.username}/servers/outage", json={"user_options": {"profile": "memory"}})
    assert r.status_code == 202, r.text
    events = progress_events(hub, CAROL.username, "outage")
    assert any("Preparing your private file share" in e for e in events)
    assert '"failed": true' in events[-1] and "private file share could not be prepared" in events[-1]
    assert STORAGE.name in events[-1] and "Traceback" not in "".join(events)
    assert computes_of(fast, CAROL.username, "outage") == []
    fast.clear_faults()
    spawn(hub, CAROL.username, {"profile": "memory"}, server="outage")  # and works once storage is back
    stop(hub, CAROL.username, "outage")


def run_on_instance(instances, compute: dict, notebook: Path) -> dict:
    """Execute a notebook as the instance's user would: the instance's environment, home and identity."""
    m = machine(instances, compute)
    out = m.home / f"executed-{notebook.name}"
    argv = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=120",
            "--output", m.inside(out), m.inside(m.home / "userfiles" / "examples" / notebook.name)]  # fmt: skip
    done = subprocess.run(
        instances.user_command(m, argv), env=instances.environment(m), cwd=m.home, timeout=300, capture_output=True, text=True
    )
    sparkmagic_logs = on_instance(instances, compute, f"userfiles/.sparkmagic/{compute['name']}/logs")
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in sparkmagic_logs.glob("*")) if sparkmagic_logs.exists() else ""
    assert done.returncode == 0, done.stderr[-5000:] + "\n--- sparkmagic logs ---\n" + logs
    return json.loads(out.read_text())


def outputs(notebook: dict) -> str:
    return "".join(
        "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
        for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])
    )  # fmt: skip


def test_example_notebooks_are_in_the_user_space_and_run(hub, fast, emulator, instances, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username, server="examples")
    [compute] = computes_of(fast, BOB.username, "examples")
    examples = on_instance(instances, compute, "userfiles/examples")
    assert sorted(p.name for p in examples.glob("*.ipynb")) == ["01-user-space.ipynb", "02-databricks-job.ipynb", "03-spark.ipynb"]

    space = outputs(run_on_instance(instances, compute, examples / "01-user-space.ipynb"))
    assert "mounted: True" in space
    written = share_client(emulator, share_name(BOB.username, BOB.oid), ca_bundle).get_file_client(f"{FOLDER}/hello-from-an-instance.txt")
    assert eventually(lambda: written.exists() and written.download_file().readall(), SETTLE, "uploaded").startswith(b"written ")

    since = fast.mark()
    job = outputs(run_on_instance(instances, compute, examples / "02-databricks-job.ipynb"))
    assert "'result_state': 'SUCCESS'" in job and f"triggered by {BOB.username}" in job
    runs = [r for r in fast.requests(since=since, service="databricks") if r["route"].endswith("RunNow")]
    assert [r["status"] for r in runs] == [200]
    stop(hub, BOB.username, "examples")


def test_spark_kernels_are_configured_on_the_instance_and_run_the_example(hub, fast, emulator, instances, ca_bundle, warm_spark):
    signed_in(hub, CAROL, ca_bundle)
    spawn(hub, CAROL.username, server="spark")  # profile "small": Fabric
    [compute] = computes_of(fast, CAROL.username, "spark")
    m = machine(instances, compute)
    link = os.readlink(m.home / ".sparkmagic")
    assert link == m.inside(m.home / "userfiles" / ".sparkmagic" / compute["name"])  # kept in the user space
    config = on_instance(instances, compute, f"userfiles/.sparkmagic/{compute['name']}/config.json")
    assert "/livyapi/versions/2023-12-01" in json.loads(config.read_text())["kernel_python_credentials"]["url"]
    assert (m.home / ".local" / "share" / "jupyter" / "kernels" / "pysparkkernel" / "kernel.json").exists()

    since = fast.mark()
    executed = run_on_instance(instances, compute, Path("03-spark.ipynb"))
    result = outputs(executed)
    assert "500500" in result and "the answer is 42" in result, json.dumps([c.get("outputs") for c in executed["cells"]])[:6000]
    fabric = fast.requests(since=since, service="fabric")
    assert all(r["principal"] == CAROL.username for r in fabric)  # the user's own token, on every request
    assert [r["status"] for r in fabric if r["method"] == "POST" and r["path"].endswith("/sessions")] == [202]
    assert [r["status"] for r in fabric if r["method"] == "DELETE"] == [200]  # the kernel's shutdown ended it
    stop(hub, CAROL.username, "spark")


def test_only_the_assigned_user_gets_through_the_instance_gateway(hub, fast, instances, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username, server="gw")
    [compute] = computes_of(fast, ALICE.username, "gw")
    base = jupyter(instances, compute, ca_bundle)
    anonymous = requests.get(f"{base}/api/contents", verify=ca_bundle, timeout=30)
    assert anonymous.status_code == 403
    _, bobs_try = instance_session(f"{base}/lab", BOB.username, ca_bundle)
    assert bobs_try.status_code == 403 and "assigned to another user" in bobs_try.text
    _, alices = instance_session(f"{base}/lab", ALICE.username, ca_bundle)
    assert alices.status_code == 200 and "JupyterLab" in alices.text
    # The way a browser comes: the hub's redirect, then straight through (alice signed in at Entra already).
    hop = session.get(f"{hub.url}/user/{ALICE.username}/gw/lab", allow_redirects=False, timeout=30)
    assert hop.status_code == 302 and hop.headers["Location"].startswith(base)
    stop(hub, ALICE.username, "gw")
