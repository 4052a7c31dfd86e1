"""A list wakes only the spawns whose instance it changed the way they wait for, not every waiter.

In a storm hundreds of spawns wait on one workspace's list. With a Condition's
notify_all every list (every 0.5-1 s) resumed all of them, and each checked its
condition and went back to sleep: a task step per waiter per list, about 2 s of
the hub's CPU over a 1000-user storm. Now the reflector checks the conditions
and resumes only the waiters whose condition holds. Pure: no ARM.
"""

from __future__ import annotations

import asyncio

import pytest

from aml_jupyterhub.spawner.azure_calls import ArmEndpoint
from aml_jupyterhub.spawner.profiles import Workspace
from aml_jupyterhub.spawner.reflector import WorkspaceReflector
from aml_jupyterhub.spawner.snapshots import ComputeSnapshot

WORKSPACE = Workspace("research", "sub", "rg", "ws", "eastus")


def running(snapshot: ComputeSnapshot | None) -> bool:
    return snapshot is not None and snapshot.state == "Running"


def test_a_list_resumes_only_the_spawn_it_concerns():
    async def scenario() -> tuple[int, set, int]:
        reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=60)
        armed, checked_in = False, set()

        def watching(snapshot: ComputeSnapshot | None) -> bool:
            if armed:
                checked_in.add(asyncio.current_task())  # the task the condition was checked in
            return running(snapshot)

        others = [asyncio.ensure_future(reflector.wait_for(f"jh-other-{i}", watching, 30)) for i in range(300)]
        mine = asyncio.ensure_future(reflector.wait_for("jh-mine", watching, 30))
        await asyncio.sleep(0)
        waiting, armed = reflector.waiters, True
        await reflector._publish({"jh-mine": ComputeSnapshot("jh-mine", "Running")}, started=0.0)
        assert (await asyncio.wait_for(mine, 5)).state == "Running"
        for _ in range(3):
            await asyncio.sleep(0)  # give any woken waiter the chance to run
        woken = checked_in - {asyncio.current_task()}
        still_waiting = sum(not t.done() for t in others)
        for t in others:
            t.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        return waiting, woken, still_waiting

    waiting, woken, still_waiting = asyncio.run(scenario())
    assert waiting == 301
    assert not woken, f"{len(woken)} waiting spawns were resumed by a list that did not concern them"
    assert still_waiting == 300


def test_a_waiter_times_out_and_a_failing_condition_fails_only_its_own_waiter():
    async def scenario() -> None:
        reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=60)
        with pytest.raises(asyncio.TimeoutError):
            await reflector.wait_for("jh-never", running, 0.05)
        assert reflector.waiters == 0

        def broken(snapshot: ComputeSnapshot | None) -> bool:
            if snapshot is not None:
                raise ValueError("broken condition")
            return False

        bad = asyncio.ensure_future(reflector.wait_for("jh-a", broken, 30))
        good = asyncio.ensure_future(reflector.wait_for("jh-a", running, 30))
        await asyncio.sleep(0)
        await reflector.update(ComputeSnapshot("jh-a", "Running"), "jh-a")
        with pytest.raises(ValueError, match="broken condition"):
            await asyncio.wait_for(bad, 5)
        assert (await asyncio.wait_for(good, 5)).state == "Running"
        assert reflector.waiters == 0

    asyncio.run(scenario())
