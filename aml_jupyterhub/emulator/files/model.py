"""Emulated Azure Files shares: share records in the state, file bytes on disk.

``state.section("shares")[account][share]`` holds the share record (quota,
metadata, ETag, times) and ``entries``: per-path properties a POSIX file
system cannot hold (metadata, content headers, SMB attributes and times).
File contents live at ``state.files_root / account / share / path``; the disk
is the truth for what exists, so a mounted view of that directory and the REST
API always see the same bytes, and files created behind REST's back still list
(with properties derived from ``stat``).

Every path is checked component by component and resolved inside its share
root, so neither ``..`` nor a symlink planted through a mount can reach
outside it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.handlers import ServiceError
from ..core.state import EmulatorState

GIB = 1024**3
MAX_QUOTA_GIB = 102400  # large file shares
MAX_FILE_SIZE = 4 * 1024**4  # 4 TiB
MAX_COMPONENT = 255
MAX_PATH = 2048
SHARE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_BAD_CHARS = re.compile(r'["\\:|<>*?\x00-\x1f]')
_CHUNK = 1024 * 1024


def invalid_name(what: str) -> ServiceError:
    # Azure's own message carries the typo.
    return ServiceError(400, "InvalidResourceName", f"The specifed resource name contains invalid characters. ({what})")


def not_found(code: str = "ResourceNotFound") -> ServiceError:
    messages = {
        "ResourceNotFound": "The specified resource does not exist.",
        "ShareNotFound": "The specified share does not exist.",
        "ParentNotFound": "The specified parent path does not exist.",
    }
    return ServiceError(404, code, messages[code])


def etag_for(*parts: Any) -> str:
    """An opaque, quoted ETag in Azure's ``"0x8D..."`` shape, stable for the same inputs."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:15].upper()
    return f'"0x{digest}"'


@dataclass(frozen=True)
class Node:
    """A path inside one share: ``rel`` is ``""`` for the share root, else ``"a/b"``."""

    account: str
    share: str
    rel: str
    path: Path

    @property
    def parent_rel(self) -> str:
        return self.rel.rpartition("/")[0]

    @property
    def name(self) -> str:
        return self.rel.rpartition("/")[2]

    def stat(self) -> os.stat_result | None:
        try:
            return self.path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def is_dir(self) -> bool:
        st = self.stat()
        return st is not None and stat_mod.S_ISDIR(st.st_mode)


def split_path(rel: str) -> list[str]:
    """Validated path components of ``rel`` (already %-decoded)."""
    if len(rel) > MAX_PATH:
        raise invalid_name("path too long")
    parts = [p for p in rel.split("/") if p != ""]
    for part in parts:
        if part in (".", "..") or len(part) > MAX_COMPONENT or _BAD_CHARS.search(part):
            raise invalid_name(part[:64])
    return parts


def share_usage(root: Path) -> int:
    """Bytes stored in a share: the sum of its files' lengths."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                continue
    return total


class FileStore:
    """Shares of every emulated account; see the module docstring for the layout."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    # -- shares ----------------------------------------------------------------
    def _shares(self, account: str) -> dict[str, Any]:
        return self.state.section("shares").setdefault(account, {})

    def share_names(self, account: str) -> list[str]:
        return sorted(self._shares(account))

    def share(self, account: str, name: str) -> dict[str, Any]:
        record = self._shares(account).get(name)
        if record is None:
            raise not_found("ShareNotFound")
        return record

    def share_root(self, account: str, name: str) -> Path:
        root = self.state.files_root / account / name
        root.mkdir(parents=True, exist_ok=True)
        return root

    def create_share(self, account: str, name: str, quota: int, metadata: dict[str, str]) -> dict[str, Any]:
        if not SHARE_NAME.match(name):
            raise invalid_name(name)
        shares = self._shares(account)
        if name in shares:
            raise ServiceError(409, "ShareAlreadyExists", "The specified share already exists.")
        now = self.state.now()
        shares[name] = {"quota": quota, "metadata": metadata, "created": now, "entries": {}}
        self._touch_share(shares[name])
        self.share_root(account, name)
        return shares[name]

    def update_share(self, account: str, name: str, *, quota: int | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
        record = self.share(account, name)
        if quota is not None:
            record["quota"] = quota
        if metadata is not None:
            record["metadata"] = metadata
        self._touch_share(record)
        return record

    def _touch_share(self, record: dict[str, Any]) -> None:
        now = self.state.now()
        record["last_modified"] = now
        record["etag"] = etag_for("share", now, record["quota"], sorted(record["metadata"].items()))
        self.state.mark_dirty()

    def policies(self, account: str, name: str) -> dict[str, dict[str, str]]:
        """The share's stored access policies (Set Share ACL); empty for a share that does not exist."""
        record = self._shares(account).get(name)
        return record.setdefault("acl", {}) if record is not None else {}

    def set_policies(self, account: str, name: str, policies: dict[str, dict[str, str]]) -> dict[str, Any]:
        record = self.share(account, name)
        record["acl"] = policies
        record["last_modified"] = self.state.now()
        record["etag"] = etag_for("share", record["last_modified"], record["quota"], sorted(policies))
        self.state.mark_dirty()
        return record

    def delete_share(self, account: str, name: str) -> None:
        self.share(account, name)
        del self._shares(account)[name]
        shutil.rmtree(self.state.files_root / account / name, ignore_errors=True)
        self.state.mark_dirty()

    def usage_bytes(self, account: str, name: str) -> int:
        return share_usage(self.share_root(account, name))

    def ensure_room(self, node: Node, growth: int) -> None:
        """Refuse a write that would take the share past its quota (403 ShareSizeLimitReached)."""
        if growth <= 0:
            return
        quota_bytes = self.share(node.account, node.share)["quota"] * GIB
        if self.usage_bytes(node.account, node.share) + growth > quota_bytes:
            raise ServiceError(403, "ShareSizeLimitReached", "The specified share is full.")

    # -- paths -----------------------------------------------------------------
    def node(self, account: str, share: str, rel: str) -> Node:
        """A validated node; the share must exist."""
        self.share(account, share)
        parts = split_path(rel)
        root = self.share_root(account, share).resolve()
        path = root.joinpath(*parts)
        if not path.resolve().is_relative_to(root):
            raise not_found()
        return Node(account, share, "/".join(parts), path)

    def parent(self, node: Node) -> Node:
        return self.node(node.account, node.share, node.parent_rel)

    def require_parent_dir(self, node: Node) -> None:
        if not self.parent(node).is_dir():
            raise not_found("ParentNotFound")

    def entry(self, node: Node) -> dict[str, Any]:
        """The stored properties of ``node`` (created empty on first use)."""
        entries = self.share(node.account, node.share)["entries"]
        self.state.mark_dirty()
        return entries.setdefault(node.rel, {})

    def peek_entry(self, node: Node) -> dict[str, Any]:
        """The stored properties of ``node`` without creating any."""
        return self.share(node.account, node.share)["entries"].get(node.rel, {})

    def forget(self, node: Node) -> None:
        """Drop stored properties of ``node`` and everything below it."""
        entries = self.share(node.account, node.share)["entries"]
        prefix = node.rel + "/"
        for rel in [r for r in entries if r == node.rel or r.startswith(prefix)]:
            del entries[rel]
        self.state.mark_dirty()

    def require(self, node: Node, *, directory: bool) -> os.stat_result:
        """The node's stat if it is a directory (or a file); else 404 ParentNotFound or ResourceNotFound."""
        st = node.stat()
        is_right_kind = st is not None and (stat_mod.S_ISDIR if directory else stat_mod.S_ISREG)(st.st_mode)
        if not is_right_kind:
            raise not_found("ResourceNotFound" if self.parent(node).is_dir() else "ParentNotFound")
        assert st is not None
        return st

    # -- directories -----------------------------------------------------------
    def create_directory(self, node: Node) -> None:
        self.require_parent_dir(node)
        if node.stat() is not None:
            raise ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")
        self.forget(node)
        node.path.mkdir()

    def delete_directory(self, node: Node) -> None:
        self.require(node, directory=True)
        if node.rel == "":
            raise ServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        if any(node.path.iterdir()):
            raise ServiceError(409, "DirectoryNotEmpty", "The specified directory is not empty.")
        node.path.rmdir()
        self.forget(node)

    def children(self, node: Node, prefix: str | None) -> list[Node]:
        """The directory's children named with ``prefix``, sorted by name."""
        self.require(node, directory=True)
        names = sorted(n for n in os.listdir(node.path) if not prefix or n.startswith(prefix))
        base = node.rel + "/" if node.rel else ""
        return [Node(node.account, node.share, base + n, node.path / n) for n in names]

    # -- files -----------------------------------------------------------------
    def create_file(self, node: Node, size: int) -> None:
        """Create or replace the file with ``size`` zero bytes (sparse on disk)."""
        self.require_parent_dir(node)
        if node.is_dir() or node.rel == "":
            raise ServiceError(
                409, "ResourceTypeMismatch", "The specified resource type does not match the type of the existing resource."
            )
        current = node.stat()
        self.ensure_room(node, size - (current.st_size if current else 0))
        self.forget(node)
        with open(node.path, "wb") as f:
            f.truncate(size)

    def resize(self, node: Node, size: int) -> None:
        st = self.require(node, directory=False)
        self.ensure_room(node, size - st.st_size)
        with open(node.path, "r+b") as f:
            f.truncate(size)

    def write_range(self, node: Node, offset: int, data: bytes) -> None:
        with open(node.path, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def clear_range(self, node: Node, offset: int, length: int) -> None:
        with open(node.path, "r+b") as f:
            f.seek(offset)
            remaining = length
            while remaining > 0:
                step = min(remaining, _CHUNK)
                f.write(b"\0" * step)
                remaining -= step

    def read_range(self, node: Node, offset: int, length: int) -> bytes:
        with open(node.path, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def delete_file(self, node: Node) -> None:
        self.require(node, directory=False)
        node.path.unlink()
        self.forget(node)

    # -- rename ----------------------------------------------------------------
    def rename(self, source: Node, target: Node, *, directory: bool, replace: bool) -> None:
        """Rename File / Rename Directory inside one share; properties move with the node.

        A file may replace an existing file when ``replace`` is set; a
        directory's target must not exist (FileREST "Rename Directory").
        """
        self.require(source, directory=directory)
        if source.rel == "" or target.rel == "":
            raise ServiceError(400, "InvalidUri", "The requested URI does not represent any resource on the server.")
        if directory and (target.rel + "/").startswith(source.rel + "/"):
            raise ServiceError(400, "InvalidInput", "One of the request inputs is not valid.")  # *unverified* code
        self.require_parent_dir(target)
        existing = target.stat()
        if existing is not None and source.rel != target.rel:
            if directory or stat_mod.S_ISDIR(existing.st_mode) or not replace:
                raise ServiceError(409, "ResourceAlreadyExists", "The specified resource already exists.")
        entries = self.share(source.account, source.share)["entries"]
        moved = {rel: entries.pop(rel) for rel in list(entries) if rel == source.rel or rel.startswith(source.rel + "/")}
        self.forget(target)
        os.replace(source.path, target.path)
        for rel, entry in moved.items():
            entries[target.rel + rel[len(source.rel) :]] = entry
        self.state.mark_dirty()

    def reset(self) -> None:
        """Remove every share's bytes (a ``state.reset_hooks`` callback)."""
        root = self.state.files_root
        for child in list(root.iterdir()) if root.exists() else []:
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
