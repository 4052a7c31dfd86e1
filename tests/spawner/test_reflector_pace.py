"""How often the shared list runs: fast while anyone waits, but never more list pages a second
than the budget allows (ARM refills a principal's reads at 25 a second). Pure: no ARM."""

from __future__ import annotations

import asyncio
import time

import pytest

from aml_jupyterhub.spawner.azure_calls import ArmEndpoint
from aml_jupyterhub.spawner.profiles import Workspace
from aml_jupyterhub.spawner.reflector import WorkspaceReflector

WORKSPACE = Workspace("research", "sub", "rg", "ws", "eastus")


def waiting_for(reflector: WorkspaceReflector, n: int) -> None:
    """Pretend ``n`` coroutines wait on the reflector (only their number matters here)."""
    reflector._waiting = {i: (lambda: False, None) for i in range(n)}


def gap(reflector: WorkspaceReflector) -> float:
    """Seconds between the last list and the next one, as the reflector plans it."""
    reflector._last_list = time.monotonic()
    return round(reflector._next_list_in(), 1)


@pytest.mark.parametrize(
    ("pages", "is_waiting", "expected"),
    [
        (1, False, 15.0),  # nobody waits: the slow interval
        (1, True, 0.5),  # someone waits: the fast interval
        (5, True, 0.5),  # 10 pages a second allows 5 pages every 0.5 s
        (11, True, 1.1),  # 1,100 instances: 11 pages at most 10 a second
        (40, False, 15.0),  # the slow interval is not stretched
    ],
)
def test_the_fast_list_keeps_within_its_page_budget(pages: int, is_waiting: bool, expected: float):
    reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=15, fast_interval=0.5, pages_per_second=10)
    reflector.pages = pages
    waiting_for(reflector, 1 if is_waiting else 0)
    assert gap(reflector) == expected


def test_a_list_records_how_many_pages_it_read():
    class Paged:
        last_pages = 7

        async def list(self):  # noqa: A003 - the reader interface
            return []


    reflector = WorkspaceReflector(ArmEndpoint(), WORKSPACE, interval=15, fast_interval=0.5)
    reflector._readers["alice"] = Paged()
    asyncio.run(reflector._list_once())
    assert reflector.pages == 7
    waiting_for(reflector, 1)
    assert gap(reflector) == 0.7
