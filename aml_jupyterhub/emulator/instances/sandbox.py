"""An emulated instance's Linux side: the notebook user and a mount namespace of its own.

On Azure an instance is a VM: its startup script runs as root, Jupyter as
``azureuser`` (docs/emulator-fidelity.md). Here every instance shares the
emulator's machine, so each gets a mount namespace (``unshare --mount``) held
open by a small holder process while the instance runs. In it the instance's
sandbox directories are bind-mounted on ``/home/azureuser``, ``/root`` and
``/mnt`` (its temporary disk, where the emulator keeps the instance's own
files under ``/mnt/x-emulator``), so ``pwd.getpwnam("azureuser").pw_dir`` is
that instance's own home and nothing leaks between instances or to the host's
``/root``. Commands enter it with ``nsenter``; ``setpriv`` drops to the
notebook user.

Only root can do this. Elsewhere (a developer laptop) :func:`isolation_unavailable`
says why, and the runtime runs everything as the current user in the sandbox
home instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path

NOTEBOOK_USER = "azureuser"
HOME = Path("/home") / NOTEBOOK_USER
ROOT_HOME = Path("/root")
TEMP_DISK = Path("/mnt")
READY_SECONDS = 10.0
TOOLS = ("unshare", "nsenter", "setpriv", "mount", "useradd")

# The holder: bind the instance's directories, then sleep until the instance stops.
# $1 home, $2 root's home, $3 temporary disk, then paths under /root the software needs.
HOLDER = """set -e
mount --bind "$1" /home/azureuser
mount --bind "$3" /mnt
home="$2"; shift 3
for keep in "$@"; do mkdir -p "$home/$keep"; mount --bind "/root/$keep" "$home/$keep"; done
mount --rbind "$home" /root
echo ready
exec sleep infinity
"""


def isolation_unavailable() -> str | None:
    """Why instances cannot run as on Azure here (None: they can)."""
    if os.geteuid() != 0:
        return "the emulator does not run as root, so instances run as the current user without their own mount namespace"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found, so instances run without their own mount namespace"
    return None


def notebook_user() -> pwd.struct_passwd:
    """The ``azureuser`` account, created (no home of its own on the host) when missing."""
    try:
        user = pwd.getpwnam(NOTEBOOK_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--no-create-home", "--home-dir", str(HOME), "--shell", "/bin/bash", "--user-group", NOTEBOOK_USER],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        user = pwd.getpwnam(NOTEBOOK_USER)
    HOME.mkdir(parents=True, exist_ok=True)  # the mount point each instance's home is bound on
    return user


def software_under_root() -> list[str]:
    """Paths below /root the instance's Python needs (a pyenv or checkout there), relative to /root."""
    here = Path(__file__).resolve().parents[3]  # the directory holding the aml_jupyterhub package
    wanted = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)} | {here}
    inside = sorted(p.relative_to(ROOT_HOME) for p in wanted if p.is_relative_to(ROOT_HOME) and p != ROOT_HOME)
    kept: list[Path] = []
    for path in inside:
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return [str(p) for p in kept]


class Namespace:
    """One running instance's mount namespace, held by a ``sleep`` process."""

    def __init__(self, holder: asyncio.subprocess.Process) -> None:
        self.holder = holder

    @classmethod
    async def open(cls, home: Path, root_home: Path, temp_disk: Path) -> Namespace:
        keep = software_under_root()
        # Root's home is private as on Ubuntu; traversable only when software must be reached through it.
        root_home.chmod(0o711 if keep else 0o700)
        holder = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HOLDER, "sh",
            str(home), str(root_home), str(temp_disk), *keep,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        assert holder.stdout is not None and holder.stderr is not None
        try:
            line = await asyncio.wait_for(holder.stdout.readline(), READY_SECONDS)
        except asyncio.TimeoutError:
            line = b""
        if line.strip() != b"ready":
            holder.kill()
            error = (await holder.stderr.read()).decode(errors="replace").strip()
            await holder.wait()
            raise RuntimeError(f"the instance's mount namespace could not be made: {error or 'no answer'}")
        return cls(holder)

    def command(self, argv: list[str], user: pwd.struct_passwd | None = None) -> list[str]:
        """``argv`` run inside the namespace, as root or (``user``) as that user with its groups."""
        enter = ["nsenter", f"--target={self.holder.pid}", "--mount", "--"]
        if user is not None:
            enter += ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
        return enter + argv

    def view(self, path: str | Path) -> Path:
        """Where the host sees ``path`` as the instance sees it (through the holder's root)."""
        return Path(f"/proc/{self.holder.pid}/root") / Path(path).relative_to("/")

    def processes(self) -> list[int]:
        """Every process inside this namespace (the holder included)."""
        try:
            mine = os.readlink(f"/proc/{self.holder.pid}/ns/mnt")
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == mine:
                        found.append(int(entry))
        return found

    async def close(self) -> None:
        """Power off: end every process left in the namespace; its mounts go with the last one."""
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.holder.kill()
        await self.holder.wait()
