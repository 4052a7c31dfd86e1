"""Faults a test injects per route: an error status, throttling, latency, a reset connection."""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

_ids = itertools.count(1)


@dataclass
class Fault:
    """Applies to requests matching every given filter, ``count`` times (None: until removed).

    ``status`` answers with that HTTP status in the service's own error format
    (``error_code``/``message`` fill it), ``retry_after`` adds the header,
    ``latency`` delays the request (then it proceeds unless a status/reset is
    also set) and ``reset`` drops the connection without an answer.
    """

    service: str | None = None
    method: str | None = None
    path: str | None = None  # regular expression searched in the path
    route: str | None = None  # handler name, as in the request log
    principal: str | None = None  # oid or upn
    status: int | None = None
    error_code: str | None = None
    message: str | None = None
    retry_after: int | None = None
    latency: float = 0.0
    reset: bool = False
    count: int | None = 1
    id: int = field(default_factory=lambda: next(_ids))
    hits: int = 0

    def matches(self, service: str, method: str, path: str, route: str, principals: set[str]) -> bool:
        return (
            (self.service is None or self.service == service)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, path) is not None)
            and (self.route is None or self.route == route)
            and (self.principal is None or self.principal.lower() in principals)
            and (self.count is None or self.count > 0)
        )


class FaultTable:
    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, **spec: Any) -> Fault:
        fault = Fault(**spec)
        if fault.path is not None:
            re.compile(fault.path)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, service: str, method: str, path: str, route: str, principals: set[str]) -> Fault | None:
        """The first matching fault, consuming one of its uses."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(service, method, path, route, principals):
                    fault.hits += 1
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
        return None

    def remove(self, fault_id: int | None = None) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if fault_id is not None and f.id != fault_id]

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(f) for f in self._faults]
