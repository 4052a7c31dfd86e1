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
# $1 home, $2 temporary disk, then groups of: a mask, the directory it covers, how many paths
# follow, and those paths (relative to the covered directory) bound back into the mask first.
HOLDER = """set -e
mount --bind "$1" /home/azureuser
mount --bind "$2" /mnt
shift 2
while [ "$#" -gt 0 ]; do
  mask="$1"; covered="$2"; n="$3"; shift 3
  while [ "$n" -gt 0 ]; do mkdir -p "$mask/$1"; mount --bind "$covered/$1" "$mask/$1"; shift; n=$((n - 1)); done
  mount --rbind "$mask" "$covered"
done
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


def software() -> set[Path]:
    """What the instance's processes run: the Python environment and the checkout holding aml_jupyterhub."""
    here = Path(__file__).resolve().parents[3]  # the directory holding the aml_jupyterhub package
    return {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)} | {here}


def closed_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that users other than its owner cannot traverse, or None."""
    for ancestor in reversed(path.parents):
        try:
            if not ancestor.stat().st_mode & 0o001:
                return ancestor
        except OSError:
            return None
    return None


def masks(root_home: Path, masks_dir: Path) -> list[tuple[Path, Path, list[str]]]:
    """(mask, covered directory, paths kept through it): what the namespace lays over the host.

    Root's home is always covered by the instance's own. Software below a directory the
    notebook user cannot traverse (``/root`` with a pyenv in it, a checkout in a ``mktemp -d``
    folder) is bound back into a traversable mask laid over that directory, in the namespace
    only: the host's modes are never changed.
    """
    kept: dict[Path, set[Path]] = {ROOT_HOME: set()}
    for path in sorted(software()):
        covered = ROOT_HOME if path.is_relative_to(ROOT_HOME) else closed_ancestor(path)
        if covered is not None and path != covered:
            kept.setdefault(covered, set()).add(path.relative_to(covered))
    result = []
    for index, (covered, paths) in enumerate(sorted(kept.items())):
        mask = root_home if covered == ROOT_HOME else masks_dir / str(index)
        mask.mkdir(parents=True, exist_ok=True)
        # Private as on Ubuntu; traversable only where software must be reached through it.
        mask.chmod(0o711 if paths else 0o700)
        outermost = [p for p in sorted(paths) if not any(p != q and p.is_relative_to(q) for q in paths)]
        result.append((mask, covered, [str(p) for p in outermost]))
    return result


class Namespace:
    """One running instance's mount namespace, held by a ``sleep`` process."""

    def __init__(self, holder: asyncio.subprocess.Process) -> None:
        self.holder = holder

    @classmethod
    async def open(cls, home: Path, root_home: Path, temp_disk: Path, masks_dir: Path) -> Namespace:
        groups = [arg for mask, covered, kept in masks(root_home, masks_dir) for arg in (str(mask), str(covered), str(len(kept)), *kept)]
        holder = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", HOLDER, "sh",
            str(home), str(temp_disk), *groups,
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
