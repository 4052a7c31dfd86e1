"""What ``start()`` must do with what Azure shows: a pure decision, tested without Azure."""

from __future__ import annotations

from enum import Enum

from .errors import ComputeFailed, NameCollision
from .snapshots import ComputeSnapshot
from .specs import Owner
from .states import Phase

AUTO_RECREATE_STATES = frozenset({"Unusable", "CreateFailed"})  # nothing on them worth keeping


class Step(str, Enum):
    CREATE = "create"
    START = "start"
    WAIT = "wait"  # already Running or on its way there
    START_WHEN_STOPPED = "start-when-stopped"  # Stopping now
    CREATE_WHEN_GONE = "create-when-gone"  # Deleting now
    RECREATE = "recreate"


def plan_start(current: ComputeSnapshot | None, owner: Owner, recreate: bool) -> Step:
    """Reuse the user's instance when possible; never touch someone else's."""
    if current is None:
        return Step.CREATE
    if current.assigned_oid.lower() != owner.oid.lower():
        raise NameCollision(current.name)
    if current.state == "Deleting":
        return Step.CREATE_WHEN_GONE
    if recreate or current.state in AUTO_RECREATE_STATES:
        return Step.RECREATE
    if current.phase is Phase.FAILED:
        raise ComputeFailed(current.name, current.state or "failed", "; ".join(current.errors))
    if current.phase is Phase.STOPPED:
        return Step.START
    if current.state == "Stopping":
        return Step.START_WHEN_STOPPED
    return Step.WAIT
