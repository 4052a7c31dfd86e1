"""The user space's real mount: the instance agent's ``rclone mount`` (FUSE) against the emulated Azure Files,
with the credential the hub gives (a SAS bound to the server's stored access policy).

Each "instance" here is a home directory of its own; the agent's mount code runs as it does on an instance
(in this process, or in a process group of its own where stopping is tested). Where the machine cannot
FUSE-mount as root these tests are skipped with the reason; CI runs them. Across workspaces and a recreated
instance, through the hub: tests/userspace/test_userspace_hub.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import unquote

import pytest

from aml_jupyterhub.emulator.instances.runtime import Instance, end_processes, mounts_under
from aml_jupyterhub.instance.mount import DIR_CACHE_SECONDS, MountError, mount, mount_point
from aml_jupyterhub.userspace import UserSpace, ensure_share, grant, policy_id, revoke, share_access
from support.fuse import eventually, requires_fuse

pytestmark = requires_fuse
OWNER = str(uuid.uuid4())
SETTLE = DIR_CACHE_SECONDS + 5  # the documented time for a change to show on another side (write-back 1 s, listing cache 10 s)


@pytest.fixture
def space(files_url, storage_account, ca_bundle) -> UserSpace:
    return UserSpace(account_url=files_url, account_key=storage_account.key, ca_bundle=ca_bundle, timeout_seconds=5)


@pytest.fixture
def share(space, key_service, share_name):
    name = share_name()
    asyncio.run(ensure_share(space, name, OWNER))
    yield key_service.get_share_client(name)
    key_service.delete_share(name)


@pytest.fixture
def instance(tmp_path, monkeypatch, ca_bundle):
    """``make(name)``: a fresh instance home as the agent sees it (HOME, state dir, the machine's CA); unmounted after."""
    homes: list[Path] = []
    monkeypatch.setenv("SSL_CERT_FILE", ca_bundle)  # an instance trusts the emulator's CA like public CAs
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)
    monkeypatch.delenv("CI_LOCAL_UBUNTU_USER", raising=False)

    def make(name: str) -> Path:
        home = tmp_path / name / "home"  # as the emulated runtime lays a machine out: <root>/home
        home.mkdir(parents=True)
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("AML_INSTANCE_STATE_DIR", str(home / ".aml-jupyterhub"))
        homes.append(home)
        return home

    yield make
    for home in homes:
        for point in mounts_under(home):
            subprocess.run(["fusermount3", "-u", point], check=False, timeout=30)  # rclone exits on an external unmount


def access_for(space: UserSpace, share: str, server: str) -> dict:
    """What the hub's instance-config gives a server's instance: a SAS bound to its (new) policy."""
    ident = policy_id(server)
    expiry = asyncio.run(grant(space, share, ident))
    return share_access(space, share, ident, expiry).as_json()


def rest_bytes(share, path: str) -> bytes | None:
    client = share.get_file_client(path)
    return client.download_file().readall() if client.exists() else None


def test_rest_and_the_mount_see_each_others_files_within_the_cache_time(space, share, instance):
    instance("ci-1")
    target = mount(access_for(space, share.share_name, "ci-1"))
    assert target == Path(os.environ["HOME"]) / "userfiles" and os.path.ismount(target)
    assert oct(target.stat().st_mode & 0o777) == "0o700" and target.stat().st_uid == os.getuid()
    (target / "notes").mkdir()
    (target / "notes" / "from-mount.txt").write_text("mount -> REST\n")
    assert eventually(lambda: rest_bytes(share, "files/notes/from-mount.txt"), SETTLE, "upload") == b"mount -> REST\n"
    share.get_directory_client("files/notes").upload_file("from-rest.txt", b"REST -> mount\n")
    seen = eventually(lambda: (target / "notes" / "from-rest.txt").exists(), SETTLE, "listed in the mount")
    assert seen and (target / "notes" / "from-rest.txt").read_bytes() == b"REST -> mount\n"
    assert [e["name"] for e in share.list_directories_and_files()] == ["files"]  # no stray '．' at the root
    mode = (target / "notes" / "from-mount.txt").stat().st_mode & 0o777
    assert mode == 0o600  # private to the notebook user


def test_two_instances_of_one_user_writing_different_files_both_persist(space, share, instance):
    instance("ci-a")
    a = mount(access_for(space, share.share_name, "ci-a"))
    instance("ci-b")
    b = mount(access_for(space, share.share_name, "ci-b"))
    (a / "from-a.txt").write_text("a\n")
    (b / "from-b.txt").write_text("b\n")
    assert eventually(lambda: rest_bytes(share, "files/from-a.txt"), SETTLE, "a's upload") == b"a\n"
    assert eventually(lambda: rest_bytes(share, "files/from-b.txt"), SETTLE, "b's upload") == b"b\n"
    assert eventually(lambda: (a / "from-b.txt").exists() and (b / "from-a.txt").exists(), SETTLE, "each sees the other's")


def test_another_users_credential_cannot_mount_the_share(space, share, instance, key_service, share_name):
    bobs_share = share_name()
    asyncio.run(ensure_share(space, bobs_share, str(uuid.uuid4())))
    try:
        home = instance("bobs")
        bobs = access_for(space, bobs_share, "bobs")
        foreign = {**bobs, "share_url": space.share_url(share.share_name)}  # bob's SAS on alice's share
        with pytest.raises(MountError, match=r"refused this instance's credential for the share \(403 AuthenticationFailed\)"):
            mount(foreign)
        assert mounts_under(home) == [] and not (home / "userfiles").exists()
    finally:
        key_service.delete_share(bobs_share)


def test_a_revoked_policy_stops_access_and_a_new_start_is_refused(space, share, instance):
    instance("ci-r")
    access = access_for(space, share.share_name, "ci-r")
    target = mount(access)
    (target / "before.txt").write_text("kept\n")
    assert eventually(lambda: rest_bytes(share, "files/before.txt"), SETTLE, "upload") == b"kept\n"
    asyncio.run(revoke(space, share.share_name, policy_id("ci-r")))  # the hub stops the server

    def refused() -> bool:
        try:
            os.listdir(target)  # answered from the listing cache until it expires, then asked of the share
        except OSError:
            return True
        return False

    (target / "late.txt").write_text("not uploaded\n")
    eventually(refused, SETTLE, "the mount refused once its policy is gone")
    assert rest_bytes(share, "files/late.txt") is None  # its upload was refused too
    rclone_log = (Path(os.environ["AML_INSTANCE_STATE_DIR"]) / "rclone-mount.log").read_text()
    sig = access["sas"].split("sig=")[1].split("&")[0]
    assert "403" in rclone_log and sig not in rclone_log and unquote(sig) not in rclone_log  # errors, never the SAS
    instance("ci-r2")
    with pytest.raises(MountError, match="403"):
        mount(access)  # the same SAS, once its policy is gone


def test_extending_the_policy_during_a_long_write_loses_no_byte(space, share, instance, control):
    space.sas_lifetime_minutes = 10
    instance("ci-long")
    target = mount(access_for(space, share.share_name, "ci-long"))
    digest, chunk = hashlib.sha256(), os.urandom(1024 * 1024)
    try:
        with open(target / "long.bin", "wb") as f:
            for i in range(24):
                f.write(chunk)
                digest.update(chunk)
                if i % 8 == 7:  # the hub extends the policy while the server runs...
                    asyncio.run(grant(space, share.share_name, policy_id("ci-long"), now=dt.datetime.fromtimestamp(control.now(), dt.timezone.utc)))
                    control.advance_clock(6 * 60)  # ...and time passes beyond the first expiry (10 min)
        on_disk = Path(control.files_share_path(space.account_name, share.share_name)) / "files" / "long.bin"
        eventually(on_disk.exists, 60, "upload of 24 MiB (renamed into place once complete)")  # at +18 min
    finally:
        control.advance_clock(-18 * 60)
    uploaded = rest_bytes(share, "files/long.bin")
    assert hashlib.sha256(uploaded).hexdigest() == digest.hexdigest()


AGENT = """
import json, sys
from aml_jupyterhub.instance.mount import mount
print(mount(json.loads(sys.argv[1])), flush=True)
"""


def test_stopping_the_instance_unmounts_and_leaves_no_process(space, share, instance):
    home = instance("ci-stop")
    access = access_for(space, share.share_name, "ci-stop")
    # As the emulated runtime runs a startup script: its own process group, which rclone stays in.
    agent = subprocess.run(  # noqa: S603
        [sys.executable, "-c", AGENT, json.dumps(access)], env=os.environ.copy(), capture_output=True, text=True,
        timeout=60, start_new_session=True,
    )  # fmt: skip
    assert agent.returncode == 0, agent.stderr[-2000:]
    target = mount_point(access)
    assert os.path.ismount(target) and access["sas"].split("sig=")[1].split("&")[0] not in agent.stdout + agent.stderr
    rclone = [pid for pid in os.listdir("/proc") if pid.isdigit() and str(target).encode() in _cmdline(pid)]
    assert len(rclone) == 1
    assert b"RCLONE_AZUREFILES_SAS_URL" not in _cmdline(rclone[0])  # the credential is in its environment only
    machine = Instance("ci-stop", "id", home.parent, 0, script_group=os.getpgid(int(rclone[0])))
    asyncio.run(end_processes(machine))  # what the runtime does when the instance stops
    assert not os.path.ismount(target) and mounts_under(home) == []
    assert not Path(f"/proc/{rclone[0]}").exists()


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""

