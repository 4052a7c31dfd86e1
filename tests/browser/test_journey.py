"""Two data scientists at once, in a real browser, on what `make demo` runs (issue #7).

alice and bob each open the hub in Debian's chromium (Playwright, headless), sign in at the
emulated Entra ID page, choose a profile on the options form, watch the progress page, land in
JupyterLab on their own emulated compute instance, see their private ``userfiles`` share, run a
Python cell and stop their server from the hub's home page. Then eve, outside the allowed groups,
gets the hub's 403 page. Screenshots of every step: ``test-artifacts/browser/<user>/``.
"""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Browser, Page, async_playwright, expect

from aml_jupyterhub.emulator.core.config import default_config
from support.browser import (
    HUB_TIMEOUT_MS,
    LAB_TIMEOUT_MS,
    SPAWN_TIMEOUT_MS,
    DemoLauncher,
    Shots,
    run_cell,
    sign_in,
)
from support.hub import wait_for

PASSWORDS = {u.username: u.password for u in default_config().users}
SPARK_TIMEOUT_MS = 240_000  # the first cell starts a Spark session (a local Spark shared by both users)
PROFILES = ["small", "memory", "gpu"]  # deployments/local_emulator/jupyterhub_config.py; gpu is for spark-users

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


async def test_two_users_sign_in_spawn_run_a_cell_and_stop_and_an_outsider_is_refused(
    demo: DemoLauncher, chromium_launch_options: dict, screenshot_folder
):
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(**chromium_launch_options)
        try:
            results = await asyncio.gather(
                journey(browser, demo, "alice", profile="memory", offered=PROFILES),
                journey(browser, demo, "bob", profile="small", offered=["small", "memory"]),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            await outsider_is_refused(browser, demo)
        finally:
            await browser.close()
    for user in ("alice", "bob", "eve"):
        assert sorted(p.name for p in (screenshot_folder / user).glob("*.png")), f"no screenshots for {user}"


async def journey(browser: Browser, demo: DemoLauncher, user: str, profile: str, offered: list[str]) -> None:
    username = f"{user}@contoso.example"
    hub = demo.url
    shots = Shots(user)
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
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
        await page.wait_for_function(SERVER_STOPPED, polling=500, timeout=SPAWN_TIMEOUT_MS)
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


async def outsider_is_refused(browser: Browser, demo: DemoLauncher) -> None:
    username = "eve@contoso.example"
    shots = Shots("eve")
    context = await browser.new_context(viewport={"width": 1280, "height": 860})
    page = await context.new_page()
    try:
        callback = await sign_in(page, demo.url, username, PASSWORDS[username], shots)
        assert callback.status == 302, f"eve's sign-in callback answered {callback.status}"  # to /hub/not-allowed
        refusal = f"{username} is signed in at Microsoft Entra ID but is not allowed to use this hub"
        await expect(page.get_by_role("heading", level=1)).to_have_text("403 : Not allowed")
        await expect(page.locator("p", has_text=refusal)).to_contain_text(
            "Ask your administrator to add you to one of these groups: data-scientists, jupyterhub-admins."
        )
        await expect(page.get_by_role("link", name="Sign in with another account")).to_be_visible()
        await shots.take(page, "refused")
    except BaseException:
        await _shoot_failure(page, shots)
        raise
    finally:
        await context.close()


async def _shoot_failure(page: Page, shots: Shots) -> None:
    try:
        await shots.take(page, "failed-here")
    except Exception:  # the page may be gone; the original failure matters more
        pass
