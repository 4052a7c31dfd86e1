"""People on what `make demo` runs, in a real browser (issues #7 and #17).

One demo and one Debian chromium (Playwright, headless) for the module; each path is a test of its
own, with its own browser context (cookies):

- alice and bob at once: sign in at the emulated Entra ID page, choose a profile, watch the progress,
  land in JupyterLab on their own instance, see ``userfiles``, run a Python and a Spark cell, stop.
- eve, outside the allowed groups: a readable 403 naming the groups, a reload without an OAuth-state
  error, and "Sign in with another account" (``prompt=select_account``) to get in as bob.
- alice's GPU profile without quota on a named server: the spawner's sentence on that server's form,
  and its "recreate" naming that server's instance.
- bob's back button and a second tab during a spawn: both on the running spawn's progress.
- carol (an admin) in JupyterLab: File > Hub Control Panel back to the hub; a cell run moves her
  server's Last Activity (``/hub/api/users``, the admin panel).

Screenshots of every step: ``test-artifacts/browser/<user or path>/``.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.async_api import Browser, Page, expect

from aml_jupyterhub.emulator.core.config import default_config
from support.browser import (
    HUB_TIMEOUT_MS,
    LAB_TIMEOUT_MS,
    SPAWN_TIMEOUT_MS,
    DemoLauncher,
    Shots,
    enter_credentials,
    poll_page,
    run_cell,
    sign_in,
)
from support.hub import wait_for

PASSWORDS = {u.username: u.password for u in default_config().users}
SPARK_TIMEOUT_MS = 240_000  # the first cell starts a Spark session (a local Spark shared by both users)
PROFILES = ["small", "memory", "gpu"]  # deployments/local_emulator/jupyterhub_config.py; gpu is for spark-users
VIEWPORT = {"width": 1280, "height": 860}
AUTHORIZE = re.compile(r"^https://127\.0\.0\.1:\d+/[^/]+/oauth2/v2\.0/authorize")
ACTIVITY_TIMEOUT_MS = 60_000  # instances report every 2 s here (tests/browser/conftest.py)

# Every line the progress page adds to its event log, reported to the test as the page shows it.
RECORD_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const log = document.getElementById("progress-log");
  if (!log) return;
  new MutationObserver(records => {
    for (const r of records) for (const n of r.addedNodes) window.reportProgress(n.textContent);
  }).observe(log, {childList: true});
});
"""

# The hub's own API, called by the page with the user's cookie (as the hub's home page does).
SERVER_STOPPED = """
async () => {
  const r = await fetch(`${jhdata.base_url}api/user?_xsrf=${encodeURIComponent(jhdata.xsrf_token)}`);
  if (!r.ok) return false;
  const user = await r.json();
  return user.server === null && !user.pending && Object.keys(user.servers || {}).length === 0 ? user : false;
}
"""


@pytest.mark.timeout(360)  # includes starting the demo (module fixture) and each user's first Spark session
async def test_two_users_sign_in_spawn_run_a_cell_and_stop(browser: Browser, demo: DemoLauncher, screenshot_folder):
    results = await asyncio.gather(
        journey(browser, demo, "alice", profile="memory", offered=PROFILES),
        journey(browser, demo, "bob", profile="small", offered=["small", "memory"]),
        return_exceptions=True,
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result
    for user in ("alice", "bob"):
        assert sorted(p.name for p in (screenshot_folder / user).glob("*.png")), f"no screenshots for {user}"

# The last activity of ``user``'s default server in ``/hub/api/users`` (an admin's view), in ms since the epoch.
LAST_ACTIVITY = """
async user => {
  const r = await fetch(`${jhdata.base_url}api/users?_xsrf=${encodeURIComponent(jhdata.xsrf_token)}`);
  if (!r.ok) throw new Error(`GET /hub/api/users: ${r.status}`);
  const found = (await r.json()).find(u => u.name === user);
  const server = found && found.servers && found.servers[""];
  return server && server.last_activity ? Date.parse(server.last_activity) : null;
}
"""


async def journey(browser: Browser, demo: DemoLauncher, user: str, profile: str, offered: list[str]) -> None:
    username = f"{user}@contoso.example"
    hub = demo.url
    shots = Shots(user)
    context = await browser.new_context(viewport=VIEWPORT)
    progress: list[str] = []
    await context.expose_binding("reportProgress", lambda _source, text: progress.append(text))
    await context.add_init_script(RECORD_PROGRESS)
    page = await context.new_page()
    try:
        # 1. The hub sends the browser to the emulated Entra ID page; signing in there brings it back.
        callback = await sign_in(page, hub, username, PASSWORDS[username], shots)
        assert callback.status == 302, f"{user}'s sign-in callback answered {callback.status}"
        await expect(page).to_have_url(re.compile(rf"^{re.escape(hub)}/hub/"), timeout=HUB_TIMEOUT_MS)
        await expect(page.locator("nav")).to_contain_text(username, timeout=HUB_TIMEOUT_MS)
        await shots.take(page, "signed-in")

        # 2. The options form offers the profiles this user's groups allow.
        await page.goto(f"{hub}/hub/spawn", timeout=HUB_TIMEOUT_MS)
        radios = page.locator('input[type="radio"][name="profile"]')
        await expect(radios).to_have_count(len(offered), timeout=HUB_TIMEOUT_MS)
        assert [await r.get_attribute("value") for r in await radios.all()] == offered
        gpu_label = page.get_by_text("GPU (NC6s v3)")
        await expect(gpu_label).to_have_count(1 if "gpu" in offered else 0)
        await expect(page.locator('input[name="profile"][value="small"]')).to_be_checked()  # the default
        await page.locator(f'input[name="profile"][value="{profile}"]').check()
        await shots.take(page, f"options-form-{profile}")
        await page.get_by_role("button", name="Start").click()

        # 3. The progress page shows the spawner's real messages, then sends the browser on to the instance.
        await expect(page).to_have_url(re.compile(r"/hub/spawn-pending/"), timeout=HUB_TIMEOUT_MS)
        log = page.locator("#progress-log")
        await expect(log).to_contain_text("Creating your compute instance", timeout=SPAWN_TIMEOUT_MS)
        await shots.take(page, "progress")
        await page.wait_for_url(re.compile(r"^https://127\.0\.0\.1:\d+/lab"), timeout=SPAWN_TIMEOUT_MS)
        assert not page.url.startswith(hub), page.url
        shown = "\n".join(progress)
        assert "Preparing your private file share" in shown, shown
        created = re.search(r"Creating your compute instance (\S+) \(", shown)
        assert created, shown
        compute = created.group(1)
        assert re.search(r"(Running your startup script|Mounting your files)", shown), shown  # the user's words
        assert f"Your compute instance {compute} is ready" in shown, shown

        # 4. JupyterLab on the instance, with the private file share mounted at ~/userfiles.
        listing = page.locator(".jp-DirListing-content")
        await expect(listing.get_by_text("userfiles", exact=True)).to_be_visible(timeout=LAB_TIMEOUT_MS)
        await shots.take(page, "jupyterlab")

        # 5. A new Python notebook runs a cell on the instance's kernel.
        await page.locator('.jp-LauncherCard[data-category="Notebook"]').filter(has_text="Python 3").first.click()
        await expect(page.locator(".jp-NotebookPanel .jp-Notebook")).to_be_visible(timeout=LAB_TIMEOUT_MS)
        output = await run_cell(page, "print(6*7)")
        assert output == "42", output
        await shots.take(page, "python-cell")
        await spark_step(page, shots)  # alice's "memory" profile: Apache Livy; bob's "small": Fabric

        # 6. Stop the server from the hub's home page; the hub and Azure agree it is stopped.
        await page.goto(f"{hub}/hub/home", timeout=HUB_TIMEOUT_MS)
        stop = page.locator("#stop")
        await expect(stop).to_have_text("Stop My Server", timeout=HUB_TIMEOUT_MS)
        await shots.take(page, "home-running")
        await stop.click()
        await expect(stop).to_be_hidden(timeout=SPAWN_TIMEOUT_MS)
        await expect(page.locator("#start")).to_have_text("Start My Server", timeout=SPAWN_TIMEOUT_MS)
        await poll_page(page, SERVER_STOPPED, None, bool, SPAWN_TIMEOUT_MS, f"the hub API to show {user} without a server")
        await asyncio.to_thread(
            wait_for, lambda: demo.compute_states().get(compute) == "Stopped", SPAWN_TIMEOUT_MS / 1000, 0.5,
            f"{compute} to be Stopped in the emulated Azure ML",
        )
        await page.reload()
        start = page.locator("#start")
        await expect(start).to_have_text(re.compile(r"^\s*Start\s+My Server\s*$"), timeout=HUB_TIMEOUT_MS)
        await expect(page.locator("#stop")).to_have_count(0)
        await shots.take(page, "home-stopped")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        await context.close()


async def spark_step(page: Page, shots: Shots) -> None:
    """A PySpark notebook runs a cell on the remote Spark (Livy or Fabric, per profile) and shows its answer."""
    await page.locator('[data-command="launcher:create"]').first.click()
    await page.locator('.jp-LauncherCard[data-category="Notebook"]').filter(has_text="PySpark").first.click()
    await expect(page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")).to_be_visible(timeout=LAB_TIMEOUT_MS)
    output = await run_cell(page, 'spark.range(1, 1001).selectExpr("sum(id) AS total").collect()[0]["total"]', SPARK_TIMEOUT_MS)
    assert "500500" in output, output
    await shots.take(page, "spark-cell")


async def test_an_outsider_is_refused_and_signs_in_with_another_account(browser: Browser, demo: DemoLauncher):
    """eve: a readable 403 naming the groups, a reload that shows it again, and a way to another account."""
    eve = "eve@contoso.example"
    shots = Shots("eve")
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    try:
        callback = await sign_in(page, demo.url, eve, PASSWORDS[eve], shots)
        assert callback.status == 302, f"eve's sign-in callback answered {callback.status}"  # to /hub/not-allowed
        await expect(page).to_have_url(f"{demo.url}/hub/not-allowed", timeout=HUB_TIMEOUT_MS)
        await expect_refusal(page, eve)
        await shots.take(page, "refused")

        # A reload shows the same page again, never "400 : OAuth state missing from cookies".
        reloaded = await page.reload(timeout=HUB_TIMEOUT_MS)
        assert reloaded is not None and reloaded.status == 403, reloaded and reloaded.status
        await expect_refusal(page, eve)
        await expect(page.locator("body")).not_to_contain_text("OAuth state")
        await shots.take(page, "refused-reloaded")

        # "Sign in with another account": Entra ID is asked to let her pick the account (prompt=select_account),
        # so it shows its sign-in page instead of signing eve in again; bob signs in there and gets in.
        async with page.expect_request(AUTHORIZE, timeout=HUB_TIMEOUT_MS) as asked:
            await page.get_by_role("link", name="Sign in with another account").click()
        query = parse_qs(urlsplit((await asked.value).url).query)
        assert query.get("prompt") == ["select_account"], query
        bob = "bob@contoso.example"
        callback = await enter_credentials(page, bob, PASSWORDS[bob], shots)
        assert callback.status == 302, f"bob's sign-in callback answered {callback.status}"
        await expect(page).to_have_url(re.compile(rf"^{re.escape(demo.url)}/hub/(?!not-allowed)"), timeout=HUB_TIMEOUT_MS)
        await expect(page.locator("nav")).to_contain_text(bob, timeout=HUB_TIMEOUT_MS)
        await expect(page.locator("nav")).not_to_contain_text(eve)
        await shots.take(page, "signed-in-as-bob")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        await context.close()


async def expect_refusal(page: Page, username: str) -> None:
    """The 403 page: one heading, the groups named once, the ways out."""
    refusal = f"{username} is signed in at Microsoft Entra ID but is not allowed to use this hub"
    await expect(page.get_by_role("heading", level=1)).to_have_text("403 : Not allowed", timeout=HUB_TIMEOUT_MS)
    await expect(page.locator("p", has_text=refusal)).to_have_count(1)
    await expect(page.locator("p", has_text=refusal)).to_contain_text(
        "Ask your administrator to add you to one of these groups: data-scientists, jupyterhub-admins."
    )
    await expect(page.get_by_role("link", name="Sign in with another account")).to_be_visible()
    await expect(page.get_by_role("link", name="Log out")).to_be_visible()


async def test_quota_error_on_a_named_server_is_shown_on_that_servers_form(browser: Browser, demo: DemoLauncher):
    """alice's GPU profile has no quota: her named server's own form says so in one sentence, and its
    "recreate" offers this server's instance (never her default server's, which the journey left stopped)."""
    alice = "alice@contoso.example"
    server = "gpu-trial"
    shots = Shots("alice-quota")
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    hub = demo.url
    form_path = f"/hub/spawn/{alice}/{server}"
    try:
        await sign_in(page, hub, alice, PASSWORDS[alice], shots)
        # A named server, added on the hub's home page (JupyterHub creates it without starting it).
        await page.goto(f"{hub}/hub/home", timeout=HUB_TIMEOUT_MS)
        await page.locator(".new-server-name").fill(server)
        await page.locator(".new-server-btn").click()
        start = page.locator(f"#start-{server}")
        await expect(start).to_be_visible(timeout=HUB_TIMEOUT_MS)
        await start.click()
        await expect(page).to_have_url(re.compile(rf"{re.escape(form_path)}$"), timeout=HUB_TIMEOUT_MS)

        # Its first spawn, on the GPU profile: the spawner's own sentence, on this server's form.
        await choose_and_start(page, "gpu")
        await expect_quota_sentence(page, form_path)
        await expect(page.locator("#aml-recreate")).to_have_count(0)  # this server has no instance to recreate
        await shots.take(page, "quota-error-first-spawn")

        # Azure fails to create its instance on the small profile: now this server has an instance of its own.
        demo.control().arm_fail_next("create", "CreateFailed", code="AllocationFailed", message="No capacity in eastus.")
        await choose_and_start(page, "small")
        # Shown on the progress page, or on the form again if it failed before the hub's slow-spawn timeout.
        failure = page.locator(".spawn-error-msg, #progress-message").filter(has_text="No capacity in eastus")
        await expect(failure).to_have_count(1, timeout=SPAWN_TIMEOUT_MS)
        computes = demo.control().arm_computes()
        [own] = [c["name"] for c in computes if c["tags"].get("aml-jupyterhub-user") == alice
                 and c["tags"].get("aml-jupyterhub-server") == server]  # fmt: skip
        await shots.take(page, "create-failed")

        # The GPU profile again: the same sentence, and the recreate offered names this server's instance only.
        await page.goto(f"{hub}{form_path}", timeout=HUB_TIMEOUT_MS)
        await choose_and_start(page, "gpu")
        await expect_quota_sentence(page, form_path)
        recreate = page.locator('label[for="aml-recreate"]')
        await expect(recreate).to_contain_text(own)
        await expect(recreate).to_contain_text("CreateFailed")
        others = [c["name"] for c in computes if c["tags"].get("aml-jupyterhub-user") == alice and c["name"] != own]
        for name in others:  # her default server's instance, when the journey above made one
            await expect(page.locator(".aml-options")).not_to_contain_text(name)
        await shots.take(page, "quota-error-recreate-this-server")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        await context.close()


async def choose_and_start(page: Page, profile: str) -> None:
    await page.locator(f'input[name="profile"][value="{profile}"]').check(timeout=HUB_TIMEOUT_MS)
    await page.get_by_role("button", name="Start").click()


async def expect_quota_sentence(page: Page, form_path: str) -> None:
    """The spawner's sentence in the form's error box, the form posting to ``form_path``, no 500 or traceback."""
    error = page.locator(".spawn-error-msg")
    await expect(error).to_contain_text(
        "The workspace has no quota left for this machine size; choose a smaller one or ask your administrator.",
        timeout=SPAWN_TIMEOUT_MS,
    )
    await expect(page.locator("body")).not_to_contain_text(re.compile(r"HTTP 500|Internal Server Error|Traceback"))
    await expect(page.locator(f'form[action^="{form_path}"]')).to_have_count(1)
    await expect(page.locator('input[name="profile"][value="small"]')).to_be_visible()  # pick another profile here


async def test_back_button_and_a_second_tab_lead_to_the_running_spawns_progress(browser: Browser, demo: DemoLauncher):
    """bob starts a named server; the back button and a second tab on its form both land on its progress,
    which then brings each of them to the instance's JupyterLab."""
    bob = "bob@contoso.example"
    server = "tabs"
    shots = Shots("bob-tabs")
    control = demo.control()
    hub = demo.url
    form_url = f"{hub}/hub/spawn/{bob}/{server}"
    pending = re.compile(rf"/hub/spawn-pending/{re.escape(bob)}/{server}(\?[^/]*)?$")
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    second = None
    timings = control.settings()["timings"]
    try:
        await sign_in(page, hub, bob, PASSWORDS[bob], shots)
        await page.goto(form_url, timeout=HUB_TIMEOUT_MS)
        control.update_settings(timings={"create": 600})  # Azure takes its time: the spawn stays pending
        await choose_and_start(page, "small")
        await expect(page).to_have_url(pending, timeout=HUB_TIMEOUT_MS)
        log = page.locator("#progress-log")
        await expect(log).to_contain_text("Creating your compute instance", timeout=SPAWN_TIMEOUT_MS)
        created = re.search(r"Creating your compute instance (\S+) \(", await log.text_content())
        assert created, await log.text_content()
        compute = created.group(1)
        await asyncio.to_thread(
            wait_for, lambda: demo.compute_states().get(compute) == "Creating", HUB_TIMEOUT_MS / 1000, 0.5,
            f"{compute} to be Creating in the emulated Azure ML",
        )

        # The back button: the form is asked for again (never cached), and the hub sends it to the progress.
        await page.go_back(timeout=HUB_TIMEOUT_MS)
        await expect(page).to_have_url(pending, timeout=HUB_TIMEOUT_MS)
        await expect(page.locator("#progress-log")).to_contain_text(f"Creating your compute instance {compute}", timeout=HUB_TIMEOUT_MS)
        await expect(page.locator(".spawn-error-msg")).to_have_count(0)
        await shots.take(page, "back-button-progress")

        # A second tab on the same server's form: its progress too, not "400 : ... is pending spawn".
        second = await context.new_page()
        await second.goto(form_url, timeout=HUB_TIMEOUT_MS)
        await expect(second).to_have_url(pending, timeout=HUB_TIMEOUT_MS)
        await expect(second.locator("#progress-log")).to_contain_text(f"Creating your compute instance {compute}", timeout=HUB_TIMEOUT_MS)
        await expect(second.locator("body")).not_to_contain_text("pending spawn")
        await shots.take(second, "second-tab-progress")

        # Azure finishes: both tabs follow the spawn to JupyterLab on the instance.
        control.update_settings(timings={"create": timings["create"]})
        control.arm_settle(compute)
        lab = re.compile(r"^https://127\.0\.0\.1:\d+/lab")
        for tab in (page, second):
            await tab.wait_for_url(lab, timeout=SPAWN_TIMEOUT_MS)
        await stop_from_home(page, hub, server)
        await shots.take(page, "stopped")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        control.update_settings(timings={"create": timings["create"]})
        await context.close()


async def stop_from_home(page: Page, hub: str, server: str) -> None:
    """Press the named server's "stop" on the hub's home page; wait until it can be started again."""
    await page.goto(f"{hub}/hub/home", timeout=HUB_TIMEOUT_MS)
    await page.locator(f"#stop-{server}").click(timeout=HUB_TIMEOUT_MS)
    await expect(page.locator(f"#start-{server}")).to_be_visible(timeout=SPAWN_TIMEOUT_MS)


@pytest.fixture(scope="module")
async def carol_in_lab(browser: Browser, demo: DemoLauncher):
    """carol (an admin) signed in, with her default server running and JupyterLab open on its instance."""
    carol = "carol@contoso.example"
    shots = Shots("carol")
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    try:
        await sign_in(page, demo.url, carol, PASSWORDS[carol], shots)
        await page.goto(f"{demo.url}/hub/spawn", timeout=HUB_TIMEOUT_MS)
        await choose_and_start(page, "small")
        await page.wait_for_url(re.compile(r"^https://127\.0\.0\.1:\d+/lab"), timeout=SPAWN_TIMEOUT_MS)
        await expect(page.locator(".jp-DirListing-content").get_by_text("userfiles", exact=True)).to_be_visible(
            timeout=LAB_TIMEOUT_MS
        )
    except BaseException:
        await _shoot_failure(page, shots)
        await context.close()
        raise
    yield carol, context, page, shots
    await context.close()


async def test_the_hub_menu_in_jupyterlab_leads_back_to_the_hub(carol_in_lab, demo: DemoLauncher):
    carol, context, page, shots = carol_in_lab
    try:
        await page.get_by_role("menuitem", name="File", exact=True).click()
        item = page.get_by_role("menuitem", name="Hub Control Panel")
        await expect(item).to_be_visible(timeout=LAB_TIMEOUT_MS)
        await expect(page.get_by_role("menuitem", name="Shut Down", exact=True)).to_have_count(0)  # would leave the instance billing
        await shots.take(page, "file-menu-hub")
        async with context.expect_page(timeout=HUB_TIMEOUT_MS) as opened:
            await item.click()
        panel = await opened.value
        await expect(panel).to_have_url(f"{demo.url}/hub/home", timeout=HUB_TIMEOUT_MS)
        await expect(panel.locator("nav")).to_contain_text(carol, timeout=HUB_TIMEOUT_MS)
        await expect(panel.locator("#stop")).to_have_text("Stop My Server")  # the hub knows this server runs
        await shots.take(panel, "hub-control-panel")
        await panel.close()
    except BaseException:
        await _shoot_failure(page, shots)
        raise


async def test_last_activity_moves_after_a_cell_runs(carol_in_lab, demo: DemoLauncher):
    """A cell run on the instance reaches the hub: the server's last_activity in ``/hub/api/users`` (read as
    carol, an admin) moves past the moment the cell ran, and the admin panel shows it."""
    carol, context, page, shots = carol_in_lab
    admin = await context.new_page()
    try:
        await admin.goto(f"{demo.url}/hub/home", timeout=HUB_TIMEOUT_MS)
        before = await admin.evaluate(LAST_ACTIVITY, carol)
        assert before is not None, "carol's server is not running"
        await page.bring_to_front()
        await page.locator('.jp-LauncherCard[data-category="Notebook"]').filter(has_text="Python 3").first.click()
        await expect(page.locator(".jp-NotebookPanel .jp-Notebook")).to_be_visible(timeout=LAB_TIMEOUT_MS)
        ran_at = await page.evaluate("Date.now()")
        assert await run_cell(page, "sum(range(10))") == "45"
        await shots.take(page, "cell-ran")
        moved = await poll_page(
            admin, LAST_ACTIVITY, carol, lambda t: t is not None and t >= ran_at, ACTIVITY_TIMEOUT_MS,
            f"carol's last activity in /hub/api/users to pass {ran_at} (the cell's run; it was {before})",
        )
        assert moved > before
        # The admin panel: carol's row shows her server's recent activity.
        await admin.goto(f"{demo.url}/hub/admin", timeout=HUB_TIMEOUT_MS)
        row = admin.locator("tr").filter(has=admin.get_by_text(carol, exact=True))
        await expect(row.locator('[data-testid="user-row-last-activity"]')).to_have_text(
            re.compile(r"^\d+ seconds ago$"), timeout=HUB_TIMEOUT_MS
        )
        await shots.take(admin, "admin-panel-last-activity")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        await admin.close()


async def _shoot_failure(page: Page, shots: Shots) -> None:
    try:
        await shots.take(page, "failed-here")
    except Exception:  # the page may be gone; the original failure matters more
        pass
