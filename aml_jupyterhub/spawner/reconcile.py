"""Stop compute instances this hub created that no server owns any more.

Instances are tagged at creation with the hub's id and their user. An
instance is an *orphan* when it carries this hub's tag, is running, and no
JupyterHub server (running or starting) refers to it, e.g. the hub crashed
before it could stop it, or a stop failed. Orphans are stopped, not deleted:
the next spawn of their user reuses them. Each round is logged as a report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from jupyterhub import orm

from . import errors
from .periodic import run_every
from .snapshots import ComputeSnapshot
from .specs import TAG_HUB, TAG_USER

log = logging.getLogger(__name__)
STOPPABLE = frozenset({"Running", "JobRunning"})


@dataclass
class ReconcileReport:
    stopped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, why)

    def __str__(self) -> str:
        parts = [f"stopped {len(self.stopped)} orphaned compute instance(s) {self.stopped}"]
        if self.failed:
            parts.append(f"could not stop {len(self.failed)}: {self.failed}")
        return "; ".join(parts)


def find_orphans(snapshots: Iterable[ComputeSnapshot], hub_id: str, owned: set[str]) -> list[ComputeSnapshot]:
    """Running instances tagged by this hub that no server owns (pure)."""
    return [s for s in snapshots if s.tags.get(TAG_HUB) == hub_id and s.name not in owned and s.state in STOPPABLE]


def owned_compute_names(db: Any) -> set[str]:
    """Names of the instances that running or starting servers refer to."""
    rows = db.query(orm.Spawner).filter(orm.Spawner.server != None).all()  # noqa: E711 (SQLAlchemy)
    return {row.state["compute_name"] for row in rows if row.state and row.state.get("compute_name")}


StopAs = Callable[[str, ComputeSnapshot, Any], Awaitable[None]]  # (username, instance, workspace)


class Reconciler:
    """One periodic task per hub process."""

    _task: asyncio.Task | None = None

    def __init__(self, hub_id: str, db: Any, reflectors: Callable[[], Iterable[Any]], stop_as_owner: StopAs) -> None:
        self.hub_id = hub_id
        self.db = db
        self.reflectors = reflectors
        self.stop_as_owner = stop_as_owner

    async def run_once(self) -> ReconcileReport:
        report = ReconcileReport()
        owned = owned_compute_names(self.db)
        for reflector in list(self.reflectors()):
            for orphan in find_orphans(reflector.snapshots.values(), self.hub_id, owned):
                try:
                    await self.stop_as_owner(orphan.tags.get(TAG_USER, ""), orphan, reflector.workspace)
                    reflector.poke()
                    report.stopped.append(orphan.name)
                except errors.ComputeError as e:
                    report.failed.append((orphan.name, str(e)))
        if report.stopped or report.failed:
            log.warning("Reconciler: %s", report)
        return report

    def start(self, interval: float) -> None:
        """Run every ``interval`` seconds in the background (once per process)."""
        if interval <= 0 or (Reconciler._task is not None and not Reconciler._task.done()):
            return
        Reconciler._task = run_every(interval, self.run_once, log, "Reconciler")
