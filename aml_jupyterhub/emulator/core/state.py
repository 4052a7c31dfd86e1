"""Everything the emulator knows, in memory, optionally persisted to a directory.

Each emulated service keeps its resources as JSON-able dicts in its own
section of :attr:`EmulatorState.data` (``computes``, ``shares``, ...), so
persisting is one atomic JSON write. File contents of emulated shares live on
disk under :attr:`EmulatorState.files_root`, the same bytes REST and a mounted
view see.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .config import EmulatorConfig
from .faults import FaultTable
from .keys import SigningKey

log = logging.getLogger("aml_jupyterhub.emulator")

STATE_FILE = "state.json"
STATE_VERSION = 1


@dataclass
class RequestRecord:
    time: float
    service: str
    method: str
    path: str
    route: str
    status: int
    principal: str
    duration_ms: float


class RequestLog:
    """A bounded log of requests, with counts per route and principal."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=maxlen)
        self._lock = threading.Lock()

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)

    def query(self, since: float = 0.0, service: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records if r.time >= since and (service is None or r.service == service)]

    def counts(self, since: float = 0.0, service: str | None = None) -> dict[str, Any]:
        records = self.query(since, service)
        return {
            "total": len(records),
            "by_route": dict(Counter(f"{r.service} {r.method} {r.route}" for r in records)),
            "by_principal": dict(Counter(r.principal for r in records)),
            "by_status": dict(Counter(str(r.status) for r in records)),
        }

    def as_dicts(self, since: float = 0.0, service: str | None = None) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.query(since, service)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


class EmulatorState:
    def __init__(self, config: EmulatorConfig, data_dir: Path | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.faults = FaultTable()
        self.log = RequestLog()
        self.clock_offset = 0.0
        self.urls: dict[str, str] = {}  # service name -> base URL, set by the server
        self.data: dict[str, Any] = {}
        self.signing_keys: list[SigningKey] = []
        # Per-service runtime objects that are not persisted (timers, buckets...).
        self.runtime: dict[str, Any] = {}
        # The emulated compute-instance runtime (instances.InstanceRuntime; see core.instance_host), when enabled.
        self.instances: Any = None
        # Called by reset(), so services can cancel timers and drop files.
        self.reset_hooks: list[Callable[[], None]] = []
        # Called with (claims, token) for every access token Entra ID mints, so a
        # test can play a resource's part (e.g. PostgreSQL accepting that token).
        self.token_listeners: list[Callable[[dict[str, Any], str], None]] = []
        self._dirty = False
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.files_root = data_dir / "files"
            self._load()
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="aml-emulator-")
            self.files_root = Path(self._tmp.name) / "files"
        self.files_root.mkdir(parents=True, exist_ok=True)
        if not self.signing_keys:
            self.signing_keys = [SigningKey.generate()]
            self.mark_dirty()

    # -- time ----------------------------------------------------------------
    def now(self) -> float:
        """The emulator's clock: real time plus what the control API advanced."""
        return time.time() + self.clock_offset

    def sign(self, claims: dict[str, Any]) -> str:
        """Sign ``claims`` with the active key and tell the token listeners."""
        token = self.signing_keys[0].sign(claims)
        for listener in self.token_listeners:
            listener(claims, token)
        return token

    # -- sections ------------------------------------------------------------
    def section(self, name: str) -> dict[str, Any]:
        """A persisted, JSON-able dict owned by one service."""
        return self.data.setdefault(name, {})

    # -- persistence -----------------------------------------------------------
    def mark_dirty(self) -> None:
        self._dirty = True

    def flush(self) -> None:
        """Write the state file if anything changed (atomic rename)."""
        if self.data_dir is None or not self._dirty:
            return
        self._dirty = False
        payload = {
            "version": STATE_VERSION,
            "clock_offset": self.clock_offset,
            "signing_keys": [k.to_dict() for k in self.signing_keys],
            "data": self.data,
        }
        target = self.data_dir / STATE_FILE
        fd, tmp = tempfile.mkstemp(dir=self.data_dir, prefix=".state-")
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f)
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)

    def _load(self) -> None:
        assert self.data_dir is not None
        path = self.data_dir / STATE_FILE
        if not path.exists():
            return
        payload = json.loads(path.read_text())
        if payload.get("version") != STATE_VERSION:
            log.warning("Ignoring emulator state %s of version %s", path, payload.get("version"))
            return
        self.clock_offset = payload.get("clock_offset", 0.0)
        self.signing_keys = [SigningKey.from_dict(k) for k in payload.get("signing_keys", [])]
        self.data = payload.get("data", {})

    def reset(self) -> None:
        """Forget every resource, token and fault (the configuration stays)."""
        for hook in self.reset_hooks:
            hook()
        self.data.clear()
        self.runtime.clear()
        self.faults.remove()
        self.log.clear()
        self.clock_offset = 0.0
        self.mark_dirty()
