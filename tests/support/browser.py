"""A real browser on the demo: Debian's chromium driven by Playwright, trusting the emulator's CA.

- ``chromium_executable()``: the Debian ``chromium`` (``scripts/debian-packages.txt``). Playwright
  never downloads a browser here: we launch this binary with ``executable_path`` and
  ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`` is set for the whole run.
- ``trusting_home(ca, dir)``: a HOME whose NSS database (``~/.pki/nssdb``, where chromium on Linux
  reads locally trusted CAs) trusts the emulator's CA, made with ``certutil`` (``libnss3-tools``).
  Chromium is launched with that HOME, so it validates the emulator's certificates as a browser
  would validate Azure's, instead of ignoring HTTPS errors.
- ``DemoLauncher``: ``python -m aml_jupyterhub.emulator.demo`` in a subprocess, exactly what
  ``make demo`` runs, on free ports (a test may shorten the demo's intervals through its environment).
- ``Shots``: numbered screenshots of each step in ``test-artifacts/browser/<user>/``.
- ``sign_in`` / ``enter_credentials`` / ``run_cell``: steps a journey is made of.
- ``poll_page``: wait, bounded, until an async function run in the page (such as a call to the hub's
  API with the page's cookie) gives an accepted answer. (``page.wait_for_function`` does not await a
  promise: an async predicate would pass at once.)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import requests
from playwright.async_api import Page, Response, expect

from aml_jupyterhub.emulator.client import EmulatorControl
from support.hub import REPO, free_port, wait_for

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")  # never fetch a browser; we use Debian's

ARTIFACTS = REPO / "test-artifacts" / "browser"
HUB_TIMEOUT_MS = 30_000
SPAWN_TIMEOUT_MS = 120_000  # instance creation (~5 s) plus JupyterLab's first load on a busy 2-core box
LAB_TIMEOUT_MS = 120_000
CELL_TIMEOUT_MS = 90_000


def chromium_executable() -> str:
    """Debian's chromium (a shell wrapper that execs /usr/lib/chromium/chromium with Debian's flags)."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not found:
        raise RuntimeError("Debian's chromium is missing: run `make system-deps` (scripts/debian-packages.txt)")
    return found


def trusting_home(ca_pem: str | Path, directory: Path) -> Path:
    """A HOME for chromium whose NSS database trusts ``ca_pem`` as a CA for websites."""
    nssdb = directory / ".pki" / "nssdb"
    nssdb.mkdir(parents=True, exist_ok=True)
    certutil = shutil.which("certutil")
    if not certutil:
        raise RuntimeError("certutil is missing: run `make system-deps` (libnss3-tools)")
    db = f"sql:{nssdb}"
    subprocess.run([certutil, "-d", db, "-N", "--empty-password"], check=True, capture_output=True)
    subprocess.run(
        [certutil, "-d", db, "-A", "-t", "C,,", "-n", "aml-jupyterhub emulator CA", "-i", str(ca_pem)],
        check=True,
        capture_output=True,
    )
    listed = subprocess.run([certutil, "-d", db, "-L"], check=True, capture_output=True, text=True).stdout
    assert "aml-jupyterhub emulator CA" in listed, listed
    return directory


class DemoLauncher:
    """``python -m aml_jupyterhub.emulator.demo --workdir DIR --hub-port N --any-ports`` (what ``make demo`` runs)."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "demo.log"
        self.endpoints: dict[str, str] = {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> DemoLauncher:
        env = {**{k: v for k, v in os.environ.items() if k != "AZUREML_CURRENT_CLOUD"}, **self.env}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aml_jupyterhub.emulator.demo", "--workdir", str(self.workdir),
             "--hub-port", str(self.port), "--any-ports"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        # The emulator's endpoints (JSON) are written to <workdir>/endpoints.json; logs go to <workdir>/logs/.
        first = wait_for(self._endpoints_line, timeout, 0.1, f"the emulator's endpoints (log: {self.log_path})")
        self.endpoints = json.loads(first)["emulator"]
        wait_for(self._healthy, timeout, 0.2, f"the demo hub at {self.url} (log: {self.log_path})")
        return self

    def _endpoints_line(self) -> str | None:
        assert self.proc is not None and self.proc.poll() is None, f"the demo launcher exited:\n{self.logs()[-3000:]}"
        path = self.workdir / "endpoints.json"
        return path.read_text() if path.exists() else None

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, f"the demo launcher exited:\n{self.logs()[-3000:]}"
        try:
            return requests.get(f"{self.url}/hub/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def logs(self) -> str:
        """The launcher's terminal, then the hub's log."""
        paths = (self.log_path, self.workdir / "logs" / "hub.log")
        return "\n".join(p.read_text(errors="replace") for p in paths if p.exists())

    def control(self) -> EmulatorControl:
        """The emulator's control API (faults, timings), as the emulator tests use it."""
        return EmulatorControl(self.endpoints["control"], self.endpoints["ca_bundle"])

    def compute_states(self) -> dict[str, str]:
        """Compute instance name -> state, as the emulated ARM reports it (the emulator's control API)."""
        r = requests.get(
            f"{self.endpoints['control']}/_emulator/arm/computes", verify=self.endpoints["ca_bundle"], timeout=30
        )
        r.raise_for_status()
        return {c["name"]: c["properties"]["properties"]["state"] for c in r.json()["computes"]}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        if getattr(self, "_log", None) is not None:
            self._log.close()


class Shots:
    """Numbered screenshots of one user's journey: ``test-artifacts/browser/<user>/<NN-step>.png``."""

    def __init__(self, user: str) -> None:
        self.folder = ARTIFACTS / user
        shutil.rmtree(self.folder, ignore_errors=True)  # no stale pictures from an earlier run
        self.folder.mkdir(parents=True)
        self.count = 0

    async def take(self, page: Page, step: str) -> Path:
        self.count += 1
        path = self.folder / f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', step.lower()).strip('-')}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path


async def poll_page(page: Page, function: str, arg: Any, accept: Callable[[Any], bool], timeout_ms: float, what: str) -> Any:
    """Evaluate the (async) JavaScript ``function(arg)`` in ``page`` until ``accept(result)``; fail after ``timeout_ms``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    while True:
        result = await page.evaluate(function, arg)
        if accept(result):
            return result
        if loop.time() > deadline:
            raise AssertionError(f"Timed out after {timeout_ms / 1000:.0f}s waiting for {what}; last answer: {result!r}")
        await asyncio.sleep(0.5)  # the polling interval


# -- steps -------------------------------------------------------------------------------------------
async def sign_in(page: Page, hub: str, username: str, password: str, shots: Shots) -> Response:
    """Open the hub, follow it to the emulated Entra ID page, and sign in there with the form.

    Returns the response to the hub's OAuth callback (the sign-in's verdict).
    """
    await page.goto(f"{hub}/hub/", timeout=HUB_TIMEOUT_MS)
    await expect(page).to_have_url(re.compile(r"/hub/login"), timeout=HUB_TIMEOUT_MS)
    await shots.take(page, "hub-login")
    await page.get_by_role("button", name="Sign in with Microsoft Entra ID").click()
    # The emulated Entra ID authorize page, over HTTPS the browser trusts.
    authorize = re.compile(r"^https://127\.0\.0\.1:\d+/[^/]+/oauth2/v2\.0/authorize")
    await expect(page).to_have_url(authorize, timeout=HUB_TIMEOUT_MS)
    return await enter_credentials(page, username, password, shots)


async def enter_credentials(page: Page, username: str, password: str, shots: Shots) -> Response:
    """On the emulated Entra ID sign-in page: sign in with the form; returns the response to the hub's callback."""
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=HUB_TIMEOUT_MS)
    await page.get_by_label("Email or username").fill(username)
    await page.get_by_label("Password").fill(password)
    await shots.take(page, "entra-sign-in")
    async with page.expect_response(lambda r: "/hub/oauth_callback" in r.url, timeout=HUB_TIMEOUT_MS) as callback:
        await page.get_by_role("button", name="Sign in").click()
    response = await callback.value
    await page.wait_for_load_state("load")
    return response


async def run_cell(page: Page, code: str, timeout_ms: int = CELL_TIMEOUT_MS) -> str:
    """Type ``code`` into the notebook's active cell, run it (Shift+Enter), return its output text.

    Waits until the cell's prompt shows an execution count (``[n]:``, not ``[*]:``), so the
    output is complete when read. Works for any kernel the notebook runs (Python, Spark, ...).
    """
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    # The kernel must be connected and idle: JupyterLab drops a run asked for before that. (The
    # toolbar's indicator says "idle" before any kernel exists; the status bar says "No Kernel |
    # Initializing", then "<kernel> | Connecting", then "<kernel> | Idle".)
    kernel_status = page.locator("#jp-main-statusbar").get_by_role("button", name=re.compile(r" \| Idle$"))
    await expect(kernel_status).to_be_visible(timeout=timeout_ms)
    indicator = panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
    await expect(indicator).to_have_count(1, timeout=timeout_ms)
    notebook = panel.locator(".jp-Notebook")
    cell = notebook.locator(".jp-Cell.jp-mod-active")
    await expect(cell).to_have_count(1, timeout=timeout_ms)
    index = await cell.evaluate("c => Array.from(c.closest('.jp-Notebook').querySelectorAll('.jp-Cell')).indexOf(c)")
    cell = notebook.locator(".jp-Cell").nth(index)  # this cell, even after Shift+Enter moves the focus on
    editor = cell.locator(".jp-InputArea-editor .cm-content")
    await editor.click()
    await editor.fill(code)
    await expect(editor).to_have_text(code, timeout=timeout_ms)
    prompt = cell.locator(".jp-InputPrompt")
    for attempt in range(3):
        await editor.click()
        await page.keyboard.press("Shift+Enter")
        try:  # queued ([*]) or done ([n]) within seconds
            await expect(prompt).to_have_text(re.compile(r"\[(\*|\d+)\]:"), timeout=15_000)
            break
        except AssertionError:
            # A kernel that has just said "Idle" may still drop a request (seen with sparkmagic's wrapper
            # kernels): run this same cell again, up to three times in all.
            if attempt == 2:
                raise
    await expect(prompt).to_have_text(re.compile(r"\[\d+\]:"), timeout=timeout_ms)
    output = cell.locator(".jp-OutputArea-output")
    await expect(output.first).to_be_visible(timeout=timeout_ms)
    return "\n".join(await output.all_inner_texts()).strip()
