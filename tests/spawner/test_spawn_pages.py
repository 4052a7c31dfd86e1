"""What a person sees on the hub's spawn pages: the spawner's own error sentence on the right form,
progress in plain words, no dead ends from a second tab or the back button, and costs on the form.

A real hub and proxy against the emulator, driven the way a browser drives it (form posts, redirects).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from support.aml_hub import ALICE, BOB, CAROL, aml_hub, instances_of, progress_events, signed_in, spawn, stop
from support.arm_fixtures import FAST
from support.hub import wait_for

HUB_ID = "pages"


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = """
c.AMLSpawner.stop_wait_seconds = 30
c.AMLSpawner.reconcile_interval_seconds = 0
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}
c.JupyterHub.named_server_limit_per_user = 0
c.AMLSpawner.cost_currency = "EUR"
for profile in c.AMLSpawner.profiles:
    profile["cost_per_hour"] = {"small": 0.29, "memory": 0.31}.get(profile["key"])
"""
    yield from aml_hub(emulator, tmp_path_factory.mktemp("pages-hub"), HUB_ID, extra)


def post_form(session, hub, username: str, server: str, profile: str):
    url = f"{hub.url}/hub/spawn/{quote(username)}" + (f"/{server}" if server else "")
    return session.post(url, data={"profile": profile, "_xsrf": session.cookies["_xsrf"]}, allow_redirects=False, timeout=60)


def new_log(hub, since: int) -> str:
    return hub.logs()[since:]


@pytest.mark.parametrize("server", ["", "gpu1"])
def test_quota_error_is_the_spawners_sentence_on_this_servers_form(hub, fast, ca_bundle, server):
    session = signed_in(hub, ALICE, ca_bundle)
    since = len(hub.logs())
    page = post_form(session, hub, ALICE.username, server, "gpu")
    assert page.status_code == 403, page.text[:500]
    assert "The workspace has no quota left for this machine size; choose a smaller one" in page.text
    assert "Unhandled error" not in page.text and "HTTP 500" not in page.text
    action = f'action="/hub/spawn/{quote(ALICE.username)}' + (f"/{server}" if server else "")
    assert action in page.text  # this server's form again, to pick another profile
    assert 'value="small"' in page.text
    log = new_log(hub, since)
    assert "no quota left" in log and "Traceback" not in log, log[-3000:]


def test_recreate_offers_this_servers_instance(hub, fast, ca_bundle):
    session = signed_in(hub, BOB, ca_bundle)
    spawn(hub, BOB.username)  # the default server has an instance of its own
    [default] = instances_of(fast, HUB_ID, BOB.username)
    fast.arm_fail_next("create", "CreateFailed", code="AllocationFailed", message="No capacity in eastus.")
    r = hub.api("POST", f"/users/{BOB.username}/servers/broken", json={"user_options": {"profile": "small"}})
    assert r.status_code in (201, 202, 502), r.text
    wait_for(lambda: "broken" not in hub.api("GET", f"/users/{BOB.username}").json()["servers"], 60, 0.2, "the failure")
    [broken] = instances_of(fast, HUB_ID, BOB.username, "broken")
    form = session.get(f"{hub.url}/hub/spawn/{quote(BOB.username)}/broken", timeout=30)
    assert form.status_code == 200
    assert 'name="recreate"' in form.text
    assert broken["name"] in form.text and "CreateFailed" in form.text
    assert default["name"] not in form.text  # not the default server's instance
    stop(hub, BOB.username)


def test_form_shows_costs_and_warns_before_a_second_instance(hub, fast, ca_bundle):
    session = signed_in(hub, CAROL, ca_bundle)
    first = session.get(f"{hub.url}/hub/spawn/{quote(CAROL.username)}", timeout=30)
    assert "about 0.29 EUR an hour" in first.text and "about 0.31 EUR an hour" in first.text
    assert "billed separately" not in first.text
    spawn(hub, CAROL.username)
    [default] = instances_of(fast, HUB_ID, CAROL.username)
    second = session.get(f"{hub.url}/hub/spawn/{quote(CAROL.username)}/another", timeout=30)
    assert second.status_code == 200
    warning = second.text.split('class="alert alert-warning aml-other-instances"', 1)[1].split("</div>", 1)[0]
    assert default["name"] in warning and "your default server" in warning and "billed separately" in warning
    stop(hub, CAROL.username)


def test_second_tab_back_button_and_reload_lead_to_the_running_spawns_progress(hub, fast, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    since = len(hub.logs())
    fast.update_settings(timings={**FAST, "create": 4.0, "setup": 1.0})
    form_url = f"{hub.url}/hub/spawn/{quote(ALICE.username)}/tabs"
    pending_url = f"/hub/spawn-pending/{ALICE.username}/tabs"
    form = session.get(form_url, timeout=30)  # a second tab opened on the form before the spawn
    assert form.headers["Cache-Control"] == "no-store"  # the back button asks the hub again
    assert "pageshow" in form.text  # ... and so does a page restored from the back-forward cache
    first = post_form(session, hub, ALICE.username, "tabs", "small")
    assert first.status_code == 302 and first.headers["Location"].startswith(pending_url)
    again = post_form(session, hub, ALICE.username, "tabs", "small")  # the second tab's Start
    assert again.status_code == 303 and again.headers["Location"].startswith(pending_url), again.text[:300]
    back = session.get(form_url, allow_redirects=False, timeout=30)  # back button, or a reload of the form
    assert back.status_code == 302 and back.headers["Location"].startswith(pending_url)
    progress_page = session.get(f"{hub.url}{pending_url}", timeout=30)  # a reloaded progress page
    assert progress_page.status_code == 200 and "progress" in progress_page.text.lower()

    events = [json.loads(e[len("data:"):]) for e in progress_events(hub, ALICE.username, "tabs")]
    messages = [e["message"] for e in events]
    assert events[-1].get("ready"), messages
    ours = messages[1:-1]  # between JupyterHub's "Server requested" and "Server ready at ..."
    assert ours and all(re.match(r"\[\d+:\d\d\] ", m) for m in ours), messages  # elapsed time on each step
    assert any("Creating your compute instance" in m and "Azure usually takes about 5 minutes" in m for m in messages)
    assert not any(re.search(r"jh-[a-z0-9-]+: [A-Z][a-zA-Z]+$", m) for m in messages), messages  # no raw Azure state names
    progress = [e["progress"] for e in events if "progress" in e]
    assert progress == sorted(progress), progress  # never goes back
    log = new_log(hub, since)
    assert "Spawner.db is deprecated" not in log and "likely < 0.8" not in log  # a spawn's log is calm
    stop(hub, ALICE.username, "tabs")
