"""What a spawn costs in ARM requests and how fast it sees Running; a timed-out write leaves nothing running.

A real hub and proxy against the emulator. The shared list runs every 30 s at
rest and every 0.5 s while a spawn waits, so a spawn that is ready within
seconds proves the fast interval; Azure calls time out after 4 s, so an
emulated ARM that answers a write after 8 s is a write that timed out.
"""

from __future__ import annotations

import time

import pytest

from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, progress_events, signed_in, spawn, stop
from support.arm_fixtures import FAST
from support.hub import wait_for

HUB_ID = "cost"
TIMEOUT_MESSAGE = "Azure Machine Learning did not answer in time or failed (TimeoutError); please try again shortly."


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = """
c.AMLSpawner.fast_poll_interval_seconds = 0.5
c.AMLSpawner.azure_timeout_seconds = 4
c.AMLSpawner.cleanup_window_seconds = 60
c.AMLSpawner.reconcile_interval_seconds = 0  # clean-ups here are the spawner's own
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0.5}
c.JupyterHub.named_server_limit_per_user = 0
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("aml-cost-hub"), HUB_ID, extra, env={"AML_POLL_INTERVAL": "30"})


def instance_of(control, username: str, server: str) -> dict | None:
    found = instances_of(control, HUB_ID, username, server)
    return found[0] if found else None


def start_failing(hub, username: str, server: str) -> str:
    """Ask for a server that will fail; the last thing the user is told."""
    r = hub.api("POST", f"/users/{username}/servers/{server}", json={"user_options": {"profile": "small"}})
    if r.status_code == 500:
        return r.json()["message"]
    assert r.status_code == 202, r.text
    return progress_events(hub, username, server)[-1]


def test_a_spawn_sends_one_read_and_one_write_and_never_polls_the_operation(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    since = fast.mark()
    spawn(hub, ALICE.username, server="cheap")
    routes = fast.request_counts(since=since, service="arm")["by_route"]
    assert not [r for r in routes if "Operation" in r], routes  # no LRO status polls
    assert {r: n for r, n in routes.items() if r != "arm GET ComputeList"} == {"arm GET ComputeItem": 1, "arm PUT ComputeItem": 1}
    stop(hub, ALICE.username, "cheap")


def test_running_is_seen_within_a_second_then_the_list_slows_down(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    fast.update_settings(timings={**FAST, "create": 2.0, "setup": 0.5})
    began = time.monotonic()
    spawn(hub, BOB.username, server="quick")
    took = time.monotonic() - began
    assert took < 2.5 + 2.5, took  # emulated provisioning + the fast list + the hub's own work; at rest: 30 s
    since = fast.mark()
    wait_for(lambda: fast.now() - since > 3, 10, 0.5, "a 3 s window")
    lists = fast.request_counts(since=since, service="arm")["by_route"].get("arm GET ComputeList", 0)
    assert lists <= 1, lists  # nobody waits: back to the 30 s interval
    stop(hub, BOB.username, "quick")


def test_a_create_that_times_out_leaves_nothing_behind(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    since = fast.mark()
    fast.inject(service="arm", route="ComputeItem", method="PUT", principal=CAROL.username, latency=8, count=1)
    assert TIMEOUT_MESSAGE in start_failing(hub, CAROL.username, "late")
    # The PUT still reaches Azure after the spawner gave up: the instance is made, then deleted by the spawner.
    wait_for(lambda: any(r["method"] == "PUT" and r["status"] == 201 for r in fast.requests(since=since, service="arm")),
             30, 0.2, "the late create")
    wait_for(lambda: instance_of(fast, CAROL.username, "late") is None, 60, 0.5, "the late instance to be deleted")
    deletes = [r for r in fast.requests(since=since, service="arm") if r["method"] == "DELETE"]
    assert len(deletes) == 1 and deletes[0]["status"] in (200, 202)


def test_a_start_that_times_out_ends_stopped(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username, server="slowstart")
    stop(hub, ALICE.username, "slowstart")
    name = instance_of(fast, ALICE.username, "slowstart")["name"]
    since = fast.mark()
    fast.inject(service="arm", route="ComputeAction", method="POST", principal=ALICE.username, latency=8, count=1)
    assert TIMEOUT_MESSAGE in start_failing(hub, ALICE.username, "slowstart")
    state = lambda: fast.arm_compute(name)["properties"]["properties"]["state"]  # noqa: E731
    wait_for(lambda: any(r["method"] == "POST" and r["path"].endswith("/start") and r["status"] == 202
                         for r in fast.requests(since=since, service="arm")), 30, 0.2, "the late start")
    wait_for(lambda: state() == "Stopped" and any(r["path"].endswith("/stop") for r in fast.requests(since=since, service="arm")),
             60, 0.5, "the late-started instance to be stopped")
