"""Clean-ups that outlive a spawner call: nothing the spawner started may be left running.

- A **create that timed out** may still be carried out by Azure (the request
  got there, the answer did not come back, or it arrives late). The spawner
  looks at once, then watches the shared list for ``within`` seconds, and
  deletes the instance that *this* create made: it carries the create's own
  id in its tags (``specs.TAG_CREATE``), so nothing else is ever deleted.
- A **start that timed out**, a **stop that timed out** and a **cancelled
  start** end the same way: once the instance is Running it is stopped; if it
  stays at rest for ``within`` seconds there is nothing to do.

Each runs as a background task, at most one per compute instance; a new
``start()`` of the same server cancels it first and takes over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from . import errors
from .azure_calls import ComputeClient
from .reflector import WorkspaceReflector
from .snapshots import ComputeSnapshot
from .specs import TAG_CREATE

log = logging.getLogger(__name__)
RUNNING = frozenset({"Running", "JobRunning"})
STARTING = frozenset({"Creating", "SettingUp", "UserSettingUp", "Starting", "Restarting", "Unknown"})
_TASKS: dict[tuple[str, str], asyncio.Task] = {}  # (workspace ARM id, compute name) -> its clean-up


def _state(snapshot: ComputeSnapshot | None) -> str | None:
    return snapshot.state if snapshot else None


async def _look(client: ComputeClient, reflector: WorkspaceReflector, name: str) -> None:
    """A direct GET now (fresher than the last list), recorded in the shared cache; best effort."""
    try:
        await reflector.update(await client.get(name), name)
    except errors.ComputeError as e:
        log.info("Could not look at %s now (%s); watching the shared list instead", name, e)
        reflector.poke()


async def delete_if_created(
    client: ComputeClient, reflector: WorkspaceReflector, name: str, create_id: str, within: float
) -> bool:
    """Delete ``name`` if the create tagged ``create_id`` made it, once it shows up within ``within`` seconds."""

    def made_by_us(snapshot: ComputeSnapshot | None) -> bool:
        return snapshot is not None and snapshot.tags.get(TAG_CREATE) == create_id

    await _look(client, reflector, name)
    try:
        await reflector.wait_for(name, made_by_us, within)
    except asyncio.TimeoutError:
        log.info("The timed-out create of %s made nothing within %ss", name, within)
        return False
    await client.delete(name)
    reflector.poke()
    log.warning("Deleted %s, made by a create whose answer timed out", name)
    return True


async def stop_when_running(
    client: ComputeClient, reflector: WorkspaceReflector, name: str, within: float, start_timeout: float
) -> bool:
    """Stop ``name`` once it is Running; give up when it stayed at rest (or gone) for ``within`` seconds."""
    await _look(client, reflector, name)
    quiet_until = time.monotonic() + within
    while True:
        snapshot = reflector.get(name)
        if _state(snapshot) in RUNNING:
            await client.stop(name)
            reflector.poke()
            return True
        starting = _state(snapshot) in STARTING
        timeout = start_timeout if starting else quiet_until - time.monotonic()
        if timeout <= 0:
            return False
        seen = _state(snapshot)
        try:
            await reflector.wait_for(name, lambda s: _state(s) != seen, timeout)
        except asyncio.TimeoutError:
            return False


def in_background(
    key: tuple[str, str], job: Coroutine[Any, Any, bool], what: str, logger: logging.Logger = log
) -> asyncio.Task:
    """Run ``job`` as the clean-up of ``key`` (replacing an earlier one); the outcome goes to ``logger``."""
    cancel(key)

    async def run() -> None:
        try:
            if await job:
                logger.info("Cleaned up %s, whose %s", key[1], what)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the reconciler is the safety net
            logger.warning("Could not clean up %s, whose %s (%s); the reconciler will", key[1], what, e)
        finally:
            if _TASKS.get(key) is task:
                del _TASKS[key]

    task = asyncio.get_running_loop().create_task(run())
    _TASKS[key] = task
    return task


def cancel(key: tuple[str, str]) -> None:
    """Drop the pending clean-up of ``key`` (a new start takes over the instance)."""
    task = _TASKS.pop(key, None)
    if task is not None and not task.done():
        task.cancel()


def pending(key: tuple[str, str]) -> asyncio.Task | None:
    return _TASKS.get(key)
