"""Every compute-instance state Azure ML reports, and what it means for a JupyterHub server."""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):
    RUNNING = "running"  # Jupyter is reachable
    PENDING = "pending"  # on its way to running (or stopped): wait
    STOPPED = "stopped"  # can be started
    FAILED = "failed"  # needs recreating (or an admin)


STATE_PHASES: dict[str, Phase] = {
    "Running": Phase.RUNNING,
    "JobRunning": Phase.RUNNING,  # running a job; its Jupyter still serves
    "Creating": Phase.PENDING,
    "SettingUp": Phase.PENDING,
    "UserSettingUp": Phase.PENDING,
    "Starting": Phase.PENDING,
    "Restarting": Phase.PENDING,
    "Stopping": Phase.PENDING,  # on its way to Stopped
    "Deleting": Phase.PENDING,  # on its way to gone
    "Resizing": Phase.PENDING,  # changing VM size; it comes back on its own
    "Unknown": Phase.PENDING,  # Azure reports it transiently; decide on a later look
    "Stopped": Phase.STOPPED,
    "CreateFailed": Phase.FAILED,
    "SetupFailed": Phase.FAILED,
    "UserSetupFailed": Phase.FAILED,
    "Unusable": Phase.FAILED,
}


def phase_of(state: str | None) -> Phase:
    """The phase of an Azure state; an unheard-of state is treated as pending, not as stopped."""
    if state is None:
        return Phase.STOPPED
    return STATE_PHASES.get(state, Phase.PENDING)
