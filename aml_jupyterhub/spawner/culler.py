"""Hub-enforced idle shutdown: stop servers whose instance reported no activity for their idle time.

Instances keep a managed identity with no Azure role, so Azure's own idle
shutdown never stops them (docs/token-broker.md, "Idle shutdown"). Instead
each instance's Jupyter reports its activity to the hub (``users:activity``,
``aml_jupyterhub.instance.activity``), and this culler, on by default, stops
every ready server whose last activity (or start, if it never reported) is
older than its idle limit (its profile's ``idle_shutdown_minutes``). No
reports means idle: a broken reporter costs a restart, never a forgotten
instance. It stops servers the way JupyterHub's own API does (proxy route,
then ``user.stop``), so tokens are revoked and the instance is stopped.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from jupyterhub.utils import utcnow

from .periodic import run_every

log = logging.getLogger(__name__)


def idle_since(last_activity: dt.datetime | None, started: dt.datetime | None) -> dt.datetime | None:
    """When the server was last seen busy: its last activity, or its start if later (or if it never reported)."""
    known = [t for t in (last_activity, started) if t is not None]
    return max(known) if known else None


def is_idle(since: dt.datetime | None, limit_seconds: float, now: dt.datetime) -> bool:
    return since is not None and limit_seconds > 0 and (now - since).total_seconds() > limit_seconds


class IdleCuller:
    """One periodic task per hub process, over every user's AMLSpawner servers."""

    _task: ClassVar[asyncio.Task | None] = None

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = settings  # the hub's tornado settings: users, proxy

    def _candidates(self) -> list[tuple[Any, str, Any]]:
        found = []
        for user in list(self.settings["users"].values()):
            for name, spawner in list(user.spawners.items()):
                if getattr(spawner, "idle_limit_seconds", None) and spawner.ready and not spawner.pending:
                    found.append((user, name, spawner))
        return found

    async def run_once(self, now: dt.datetime | None = None) -> list[str]:
        """Stop every idle server now; returns their log names."""
        now = now or utcnow(with_tz=False)
        stopped = []
        for user, name, spawner in self._candidates():
            limit = spawner.idle_limit_seconds()
            since = idle_since(spawner.orm_spawner.last_activity, spawner.orm_spawner.started)
            if not is_idle(since, limit, now):
                continue
            log.warning("Idle culler: stopping %s (no activity since %s UTC, limit %.0f s)", spawner._log_name, since, limit)
            try:
                await self.settings["proxy"].delete_user(user, name)
                await user.stop(name)
                stopped.append(spawner._log_name)
            except Exception:  # noqa: BLE001 - one failed stop must not end the round
                log.exception("Idle culler could not stop %s", spawner._log_name)
        return stopped

    def start(self, interval: float) -> None:
        """Run every ``interval`` seconds in the background (once per process; 0: never)."""
        if interval <= 0 or (IdleCuller._task is not None and not IdleCuller._task.done()):
            return
        IdleCuller._task = run_every(interval, self.run_once, log, "Idle culler")
