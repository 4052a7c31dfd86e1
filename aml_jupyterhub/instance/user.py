"""The instance's notebook user: whose home gets everything the user's Jupyter, kernels and code read.

Azure ML runs setup scripts (and so the agent) as root and Jupyter as the user
named by ``CI_LOCAL_UBUNTU_USER`` (``azureuser``). What the agent writes for
that user goes in the user's home, owned by the user, private (directories
0700, files 0600), never in root's home.
"""

from __future__ import annotations

import errno
import os
import pwd
from pathlib import Path

#: Errors of a file system that decides ownership itself (a FUSE mount with --uid/--gid).
OWNERSHIP_FIXED = {errno.EPERM, errno.ENOTSUP, errno.ENOSYS, errno.EOPNOTSUPP}


def notebook_user() -> pwd.struct_passwd:
    """``CI_LOCAL_UBUNTU_USER``'s account, or the current user's where it is not set."""
    name = os.environ.get("CI_LOCAL_UBUNTU_USER")
    return pwd.getpwnam(name) if name else pwd.getpwuid(os.geteuid())


def home() -> Path:
    """The notebook user's home (``$HOME`` when the agent runs as that user)."""
    user = notebook_user()
    return Path.home() if user.pw_uid == os.geteuid() else Path(user.pw_dir)


def give(path: Path) -> None:
    """Make ``path`` (and, for a directory, everything below it) the notebook user's, private.

    Symbolic links are given themselves and not followed.
    """
    user = notebook_user()
    paths = [path]
    if path.is_dir() and not path.is_symlink():
        paths += [Path(top, name) for top, dirs, files in os.walk(path) for name in dirs + files]
    for item in paths:
        try:
            if item.is_symlink():
                os.lchown(item, user.pw_uid, user.pw_gid)
                continue
            os.chown(item, user.pw_uid, user.pw_gid)
            item.chmod(0o700 if item.is_dir() else 0o600 | (item.stat().st_mode & 0o100))
        except OSError as e:
            if e.errno not in OWNERSHIP_FIXED:
                raise


def private_dirs(base: Path, relative: str | Path) -> Path:
    """``base / relative``, each missing directory created the notebook user's and private."""
    path = base
    for part in Path(relative).parts:
        path = path / part
        if not path.exists():
            path.mkdir(mode=0o700)
            give(path)
    return path
