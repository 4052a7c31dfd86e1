"""One periodic ``list`` per workspace, shared by every spawner in the hub.

``poll()`` and the waits in ``start()``/``stop()`` read this cache instead of
calling Azure, so ARM reads per minute depend on the number of workspaces,
not the number of users. While anyone waits on the workspace (a spawn, a
stop, a clean-up) it lists every ``fast_interval`` seconds (or, for a list
of many pages, no more than ``pages_per_second`` pages a second), so a change
is seen within about that long; otherwise every ``interval``. One list serves
every waiter. Throttling (429) and outages back off exponentially. After a
list or an update the reflector itself checks each waiter's condition and wakes
only those whose condition now holds (a storm has hundreds of waiters; waking
them all on every list, as a Condition's notify_all does, costs each a task
step and a lock hand-off per list).

Which identity lists? By default the delegated ARM credential of a user who
has a server in that workspace (the most recently registered one that still
works): no extra secret on the hub. An admin may configure a hub credential
with Reader on the workspaces instead (``AMLSpawner.poll_credential``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Callable, ClassVar

from . import errors
from .azure_calls import ArmEndpoint, ComputeClient
from .profiles import Workspace
from .snapshots import ComputeSnapshot

log = logging.getLogger(__name__)


class WorkspaceReflector:
    _instances: ClassVar[dict[tuple[str, str], WorkspaceReflector]] = {}

    def __init__(
        self, endpoint: ArmEndpoint, workspace: Workspace, interval: float, fast_interval: float | None = None,
        max_backoff: float = 300.0, pages_per_second: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.workspace = workspace
        self.interval = interval
        self.fast_interval = min(interval, fast_interval if fast_interval is not None else interval)
        self.max_backoff = max_backoff
        self.pages_per_second = pages_per_second
        self.pages = 1  # pages of the last list
        self._waiting: dict[int, tuple[Callable[[], bool], asyncio.Future]] = {}  # coroutines waiting for a change
        self._poked = False
        self._last_list = float("-inf")  # monotonic time the last list began
        self._backoff = 0.0  # after failures: seconds from the last list to the next
        self.snapshots: dict[str, ComputeSnapshot] = {}
        self._updated_at: dict[str, float] = {}  # name -> when a direct read or write answer last set it
        self.synced_at = 0.0
        self.lists = 0  # successful lists, for metrics and tests
        self.failures = 0
        self._readers: OrderedDict[str, ComputeClient] = OrderedDict()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    @classmethod
    def for_workspace(
        cls, endpoint: ArmEndpoint, workspace: Workspace, interval: float, fast_interval: float | None = None,
        pages_per_second: float = 10.0,
    ) -> WorkspaceReflector:
        """The hub-wide reflector of ``workspace`` (created and started on first use)."""
        key = (endpoint.url, workspace.arm_id.lower())
        if key not in cls._instances:
            cls._instances[key] = cls(endpoint, workspace, interval, fast_interval, pages_per_second=pages_per_second)
        reflector = cls._instances[key]
        reflector.start()
        return reflector

    @classmethod
    def all(cls) -> list[WorkspaceReflector]:
        return list(cls._instances.values())

    @classmethod
    async def stop_all(cls) -> None:
        for reflector in list(cls._instances.values()):
            await reflector.stop()
        cls._instances.clear()

    # -- who lists -------------------------------------------------------------
    def register(self, key: str, credential: Any) -> ComputeClient:
        """Offer an identity to list with (newest first); idempotent. Returns its reader, for direct reads."""
        if key in self._readers:
            self._readers.move_to_end(key)
        else:
            self._readers[key] = ComputeClient(self.endpoint, self.workspace, credential)
            if len(self._readers) == 1:
                self._wake.set()  # the loop was idle with nobody to list as
        return self._readers[key]

    def unregister(self, key: str) -> None:
        reader = self._readers.pop(key, None)
        if reader is not None:
            asyncio.ensure_future(reader.close())

    # -- the loop ----------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for key in list(self._readers):
            self.unregister(key)

    def poke(self) -> None:
        """Ask for a list soon (after a write); coalesced, so many pokes cost one list."""
        self._poked = True
        self._wake.set()

    def _next_list_in(self) -> float:
        """Seconds until the next list is due: never closer than ``fast_interval`` to the last one,
        nor than its pages allow at ``pages_per_second``."""
        if self._backoff:
            gap = self._backoff
        elif self._poked or self.waiters:
            gap = max(self.fast_interval, self.pages / self.pages_per_second)
        else:
            gap = self.interval
        return self._last_list + gap - time.monotonic()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            if not self._readers:
                await self._wake.wait()  # sleep until someone registers
                continue
            delay = self._next_list_in()
            if delay > 0:
                try:  # a poke or a new waiter wakes us to recompute the delay
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                continue
            self._poked = False
            self._last_list = time.monotonic()
            self._backoff = await self._list_once()

    async def _list_once(self) -> float:
        """List with the newest working identity; returns a back-off after a failure, else 0."""
        while self._readers:
            key, reader = next(reversed(self._readers.items()))
            started = time.monotonic()
            try:
                snapshots = await reader.list()
            except errors.SignInExpired:
                log.info("Reflector for %s: identity %s can no longer list; trying another", self.workspace.key, key)
                self.unregister(key)
                continue
            except errors.ComputeError as e:
                self.failures += 1
                base = self.fast_interval if self.waiters else self.interval
                backoff = min(self.max_backoff, base * 2 ** min(self.failures, 8))
                log.warning("Listing computes of %s failed (%s); next try in %.0fs", self.workspace.key, e, backoff)
                return backoff
            self.failures = 0
            self.pages = reader.last_pages
            await self._publish({s.name: s for s in snapshots}, started)
            return 0.0
        return 0.0

    @property
    def waiters(self) -> int:
        """How many coroutines wait for a change right now (the list runs fast while any do)."""
        return len(self._waiting)

    async def _publish(self, snapshots: dict[str, ComputeSnapshot], started: float) -> None:
        """Make a finished list the cache; what a direct read or write answered after the list
        began is newer than the list and is kept (a create's answer must not be undone by a list
        whose pages were read before the instance existed)."""
        for name, at in list(self._updated_at.items()):
            if at < started:
                del self._updated_at[name]
            elif name in self.snapshots:
                snapshots[name] = self.snapshots[name]
            else:
                snapshots.pop(name, None)
        self.snapshots = snapshots
        self.synced_at = time.monotonic()
        self.lists += 1
        self._wake_satisfied()

    # -- readers of the cache ------------------------------------------------------
    def get(self, name: str) -> ComputeSnapshot | None:
        return self.snapshots.get(name)

    async def update(self, snapshot: ComputeSnapshot | None, name: str) -> None:
        """Record what a direct GET or a write's answer just saw (fresher than the last list)."""
        self._updated_at[name] = time.monotonic()
        if snapshot is None:
            self.snapshots.pop(name, None)
        else:
            self.snapshots[name] = snapshot
        self._wake_satisfied()

    def _wake_satisfied(self) -> None:
        """Wake the waiters whose condition holds now; the others keep sleeping."""
        for condition, future in list(self._waiting.values()):
            if future.done():
                continue
            try:
                if condition():
                    future.set_result(None)
            except Exception as e:  # noqa: BLE001 - a failing condition fails its own waiter only
                future.set_exception(e)

    async def wait_synced(self, timeout: float) -> bool:
        """Wait for a first successful list (e.g. right after a hub restart)."""
        return await self.wait_until(lambda: self.synced_at > 0, timeout)

    async def wait_for(
        self, name: str, done: Callable[[ComputeSnapshot | None], bool], timeout: float | None
    ) -> ComputeSnapshot | None:
        """Wait until ``done(snapshot)`` holds for compute ``name``; returns that snapshot."""
        await self.wait_until(lambda: done(self.snapshots.get(name)), timeout)
        return self.snapshots.get(name)

    async def wait_until(self, condition: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until ``condition()`` holds after a list or an update; lists run fast meanwhile."""
        if condition():
            return True
        future = asyncio.get_running_loop().create_future()
        key = id(future)
        self._waiting[key] = (condition, future)
        if len(self._waiting) == 1:
            self._wake.set()  # the loop may be sleeping for the slow interval
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            del self._waiting[key]
        return True
