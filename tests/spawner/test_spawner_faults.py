"""AMLSpawner under Azure's bad days: throttling, server errors, a slow Azure, an expired sign-in, a cancel.

A real hub and proxy against the emulator, with the reconciler off, so every
clean-up seen here is the spawner's own.
"""

from __future__ import annotations

import pytest

from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, progress_events, signed_in, stop
from support.arm_fixtures import FAST
from support.hub import wait_for

HUB_ID = "faults"


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = """
c.AMLSpawner.patience_seconds = 1
c.AMLSpawner.stop_wait_seconds = 30
c.AMLSpawner.reconcile_interval_seconds = 0  # clean-ups here are the spawner's own
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0.5}
c.JupyterHub.named_server_limit_per_user = 0
c.AMLSpawner.profiles = [*c.AMLSpawner.profiles, {
    "key": "badspark", "display_name": "Bad Spark", "workspace": "ws-research", "vm_size": "Standard_DS3_v2",
    "spark": {"backend": "fabric", "endpoint": "http://fabric.example/v1/workspaces/w/lakehouses/l/livyapi/versions/2023-12-01"},
}]
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("aml-faults-hub"), HUB_ID, extra)


def start(hub, username: str, server: str, profile: str = "small") -> list[str]:
    """Ask for a server and follow its progress to the end; the events' data lines."""
    r = hub.api("POST", f"/users/{username}/servers/{server}", json={"user_options": {"profile": profile}})
    assert r.status_code in (201, 202), r.text
    return [] if r.status_code == 201 else progress_events(hub, username, server)


def instance_of(control, username: str, server: str) -> dict | None:
    found = instances_of(control, HUB_ID, username, server)
    return found[0] if found else None


def test_throttled_create_succeeds_after_retry_after(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    since = fast.mark()
    fast.inject(service="arm", route="ComputeItem", method="PUT", status=429, error_code="TooManyRequests", retry_after=1, count=2)
    events = start(hub, ALICE.username, "throttled")
    assert '"ready": true' in events[-1], events
    puts = [r for r in fast.requests(since=since, service="arm") if r["method"] == "PUT"]
    assert [r["status"] for r in puts] == [429, 429, 201]  # two refusals honoured, then created
    stop(hub, ALICE.username, "throttled")


def test_server_errors_on_reads_and_start_are_retried(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    assert '"ready": true' in start(hub, BOB.username, "flaky")[-1]
    stop(hub, BOB.username, "flaky")
    since = fast.mark()
    fast.inject(service="arm", route="ComputeItem", method="GET", status=500, error_code="InternalServerError", count=2)
    fast.inject(service="arm", route="ComputeAction", method="POST", status=503, error_code="ServiceUnavailable", count=1)
    events = start(hub, BOB.username, "flaky")
    assert '"ready": true' in events[-1], events
    statuses = [r["status"] for r in fast.requests(since=since, service="arm")]
    assert statuses.count(500) == 2 and statuses.count(503) == 1
    stop(hub, BOB.username, "flaky")


def test_slow_azure_gets_a_patience_message(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    fast.update_settings(timings={**FAST, "create": 3.5})
    events = start(hub, CAROL.username, "slow")
    assert any("Azure is taking its time, hang on" in e for e in events), events
    assert '"ready": true' in events[-1]
    stop(hub, CAROL.username, "slow")


def test_expired_sign_in_during_spawn_is_a_clear_message(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    fast.entra_revoke(CAROL.username)
    fast.advance_clock(2 * 3600)  # every access token the hub holds for carol is now expired
    r = hub.api("POST", f"/users/{CAROL.username}/servers/expired", json={"user_options": {"profile": "small"}})
    assert r.status_code == 401  # fails at once: the API's answer carries the message
    message = r.json()["message"]
    assert "sign-in has expired or was revoked" in message and "sign in again" in message
    assert "Traceback" not in message and "invalid_grant" not in message
    assert instance_of(fast, CAROL.username, "expired") is None


def test_cancelled_start_stops_the_instance_without_the_reconciler(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    since = len(hub.logs())
    fast.update_settings(timings={**FAST, "create": 2.0})
    r = hub.api("POST", f"/users/{BOB.username}/servers/cancelled", json={"user_options": {"profile": "small"}})
    assert r.status_code == 202
    instance = wait_for(lambda: instance_of(fast, BOB.username, "cancelled"), 10, 0.1, "the instance")
    assert instance["properties"]["properties"]["state"] == "Creating"
    assert hub.api("DELETE", f"/users/{BOB.username}/servers/cancelled").status_code in (202, 204)
    state = lambda: fast.arm_compute(instance["name"])["properties"]["properties"]["state"]  # noqa: E731
    wait_for(lambda: state() == "Stopped", 30, 0.2, "the cancelled instance to be stopped")
    assert "whose start was cancelled" in hub.logs()
    assert "Traceback" not in hub.logs()[since:]


def test_invalid_spark_settings_fail_before_anything_is_created(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    r = hub.api("POST", f"/users/{ALICE.username}/servers/badspark", json={"user_options": {"profile": "badspark"}})
    assert r.status_code == 500  # the admin's settings: a hub error, not the user's
    message = r.json()["message"]
    assert message == (
        "The Spark settings for this server are invalid (spark.endpoint must be https for the fabric backend); "
        "ask your administrator."
    )
    assert instance_of(fast, ALICE.username, "badspark") is None


def test_a_throttling_storm_that_outlasts_the_retries_is_a_clear_message(hub, fast, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    fast.inject(service="arm", route="ComputeItem", method="PUT", status=429, error_code="TooManyRequests", retry_after=1, count=None)
    r = hub.api("POST", f"/users/{BOB.username}/servers/storm", json={"user_options": {"profile": "small"}})
    events = [r.text] if r.status_code == 429 else progress_events(hub, BOB.username, "storm")
    assert "Azure is throttling requests right now; please try again in a minute." in events[-1], events
    assert "Traceback" not in "".join(events)
    fast.clear_faults()
    assert instance_of(fast, BOB.username, "storm") is None


def test_missing_azure_role_is_explained(hub, fast, ca_bundle):
    signed_in(hub, CAROL, ca_bundle)
    fast.arm_assign_role("ws-research", CAROL.username, None)  # restored by the control fixture
    r = hub.api("POST", f"/users/{CAROL.username}/servers/norole", json={"user_options": {"profile": "small"}})
    events = [r.json()["message"]] if r.status_code == 403 else progress_events(hub, CAROL.username, "norole")
    assert "Azure refused: you do not have permission for this in the workspace" in events[-1], events
    assert "Microsoft.MachineLearningServices/workspaces/computes" in events[-1]  # Azure's own words follow
    assert instance_of(fast, CAROL.username, "norole") is None
