"""Mounting the user's share at its mount point, with the share-scoped credential from the hub.

On Azure the mount is a REST/FUSE agent using that credential (not part of
this package yet: see docs/user-space.md). On the local emulator the mount
is a symlink to the emulated share's directory, which the emulated Files
service discloses only to a request its authorization accepts, so a wrong,
expired or foreign credential fails here as it would on Azure.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import requests

from .user import give, home


class MountError(Exception):
    """The share could not be mounted; the message is safe to log."""


def mount_point(access: dict[str, Any]) -> Path:
    """Where the share appears: ``~`` is the notebook user's home, also when the agent runs as root."""
    path = str(access["mount_path"])
    return home() / path[2:] if path == "~" or path.startswith("~/") else Path(path)


def _auth(access: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The query string and headers that carry the credential (a SAS, or the user's token from the broker)."""
    if access["mode"] == "sas":
        return f"&{access['sas']}", {}
    from ..tokens import get_token

    return "", {"Authorization": f"Bearer {get_token('storage').token}", "x-ms-file-request-intent": "backup"}


def mount(access: dict[str, Any], timeout: float = 30.0) -> Path:
    """Make the share appear at its mount point; idempotent (re-run on every start)."""
    if not os.environ.get("AML_EMULATOR_INSTANCE"):
        raise MountError("mounting on Azure needs the REST/FUSE mount agent, which is not part of this release yet")
    query, headers = _auth(access)
    try:
        response = requests.get(
            f"{access['share_url']}?restype=directory&comp=x-emulator-mount{query}",
            headers={"x-ms-version": "2025-05-05", **headers},
            timeout=timeout,
        )
    except requests.RequestException as e:  # its text holds the URL, and so the SAS: never pass it on
        raise MountError(f"Azure Files cannot be reached ({type(e).__name__})") from None
    if response.status_code != 200:
        code = response.headers.get("x-ms-error-code", response.reason)
        raise MountError(f"Azure Files refused the share's credential ({response.status_code} {code})")
    source = Path(response.json()["local_path"])
    target = mount_point(access)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        if any(target.iterdir()):
            raise MountError(f"{target} exists and is not empty; move it away to mount the share there")
        target.rmdir()
    target.symlink_to(source, target_is_directory=True)
    give(target)  # the mount point is the notebook user's
    return target
