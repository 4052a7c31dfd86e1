"""Whether this machine can FUSE-mount as an instance does (root, /dev/fuse, fusermount3), and a bounded wait.

Tests that need a real mount are marked ``requires_fuse``: where the machine
cannot mount they are skipped with the reason, and pytest's summary counts
them ("N skipped"); CI runs as root with /dev/fuse and runs them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import TypeVar

import pytest

from support.hub import wait_for

T = TypeVar("T")


def fuse_missing() -> str:
    """Why this machine cannot mount the user space ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (the instance agent mounts as root): run as root, as CI does"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse (a FUSE mount of the user's share): run where /dev/fuse exists, as CI does"
    if not (shutil.which("fusermount3") or shutil.which("fusermount")):
        return "needs fusermount3: apt-get install fuse3 (scripts/debian-packages.txt)"
    return ""


requires_fuse = pytest.mark.skipif(bool(fuse_missing()), reason=f"real FUSE mount not possible here: {fuse_missing()}")


def eventually(probe: Callable[[], T], timeout: float, what: str) -> T:
    """``probe()`` until it returns something truthy, at most ``timeout`` seconds (mount caches settle)."""
    return wait_for(probe, timeout, interval=0.2, message=what)
