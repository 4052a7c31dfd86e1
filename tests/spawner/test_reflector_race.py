"""The shared compute list never undoes what a direct read or a create's answer saw after it began.

bench/spawn_storm.py --users 1000 failed 5 of 1000 spawns with "... is gone: it was deleted while
starting": a list whose pages were read before the instance existed finished after the create's
answer had put the instance in the cache, and replaced the cache without it. (Real ARM lists can
lag a write too.) Pure: the list is a stand-in reader whose answer the test controls.
"""

from __future__ import annotations

import asyncio

from aml_jupyterhub.spawner.azure_calls import ArmEndpoint
from aml_jupyterhub.spawner.profiles import Workspace
from aml_jupyterhub.spawner.reflector import WorkspaceReflector
from aml_jupyterhub.spawner.snapshots import ComputeSnapshot

WORKSPACE = Workspace("research", "sub", "rg", "ws", "eastus")


class SlowList:
    """A reader whose list() answers what it was told, once the test lets it finish."""

    last_pages = 1

    def __init__(self, answer: list[ComputeSnapshot]) -> None:
        self.answer, self.started, self.finish = answer, asyncio.Event(), asyncio.Event()

    async def list(self) -> list[ComputeSnapshot]:
        self.started.set()
        await self.finish.wait()
        return self.answer


def test_a_list_begun_before_a_create_does_not_drop_the_created_instance():
    async def scenario() -> tuple[ComputeSnapshot | None, ComputeSnapshot | None]:
        reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=60)
        old = ComputeSnapshot("jh-old", "Running")
        reader = SlowList([old])
        reflector._readers["alice"] = reader  # the identity the list runs as
        listing = asyncio.ensure_future(reflector._list_once())
        await asyncio.wait_for(reader.started.wait(), 5)
        created = ComputeSnapshot("jh-new", "Creating")
        await reflector.update(created, "jh-new")  # the PUT's answer, while the list is under way
        reader.finish.set()
        await asyncio.wait_for(listing, 5)
        kept = reflector.get("jh-new")
        # A later list that sees the instance takes over as usual.
        reader2 = SlowList([old, ComputeSnapshot("jh-new", "Running")])
        reflector._readers["alice"] = reader2
        reader2.finish.set()
        await asyncio.wait_for(reflector._list_once(), 5)
        return kept, reflector.get("jh-new")

    kept, later = asyncio.run(scenario())
    assert kept is not None and kept.state == "Creating"
    assert later is not None and later.state == "Running"


def test_a_deletion_seen_by_a_direct_read_is_not_undone_by_an_older_list():
    async def scenario() -> ComputeSnapshot | None:
        reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=60)
        reader = SlowList([ComputeSnapshot("jh-gone", "Running")])
        reflector._readers["alice"] = reader
        listing = asyncio.ensure_future(reflector._list_once())
        await asyncio.wait_for(reader.started.wait(), 5)
        await reflector.update(None, "jh-gone")  # a GET answered 404 after the list began
        reader.finish.set()
        await asyncio.wait_for(listing, 5)
        return reflector.get("jh-gone")

    assert asyncio.run(scenario()) is None
