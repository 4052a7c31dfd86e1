"""The emulator's stand-in for mounting a share (SMB/FUSE cannot run here).

``GET /{account}/{share}?restype=directory&comp=x-emulator-mount`` is authorized
exactly like a write to the share's files (SAS with ``w``, SharedKey, or a
bearer token with the file data roles), then answers where the share's bytes
live on this machine, so the emulated instance's mount shim can link the
mount point to them: the mounted view and FileREST then see the same bytes.
Not part of Azure's API.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .context import FilesContext


def mount_source(h: FilesContext) -> None:
    h.store.share(h.account.name, h.share)  # 404 ShareNotFound like any share operation
    body = json.dumps({"local_path": str(h.store.share_root(h.account.name, h.share))}).encode()
    h.set_status(200)
    h.set_header("Content-Type", "application/json")
    h.finish(body)
