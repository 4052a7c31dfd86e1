"""Fixtures for the browser tests: the demo launcher and Debian's chromium (see tests/support/browser.py)."""

from __future__ import annotations

import os

import pytest
from playwright.async_api import async_playwright

from support.browser import ARTIFACTS, DemoLauncher, chromium_executable, trusting_home

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # Debian's chromium only; never a downloaded one

_screenshot_folders: list[str] = []
# Instances report their Jupyter activity every 2 s instead of every minute (the Last Activity path).
DEMO_ENV = {"AML_ACTIVITY_INTERVAL": "2"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """What ``make demo`` runs, with its own state in a temporary folder and free ports; one per module."""
    launcher = DemoLauncher(tmp_path_factory.mktemp("browser") / "demo", env=DEMO_ENV)
    launcher.workdir.mkdir()
    try:
        yield launcher.start()
    finally:
        launcher.stop()


@pytest.fixture(scope="module")
def chromium_launch_options(demo) -> dict:
    """``chromium.launch()`` arguments: Debian's binary, headless, trusting the emulator's CA.

    HTTPS errors are not ignored: chromium's own NSS database trusts the emulator's CA.
    """
    home = trusting_home(demo.endpoints["ca_bundle"], demo.workdir.parent / "chromium-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYWRIGHT_BROWSERS")}
    return {
        "executable_path": chromium_executable(),
        "headless": True,
        "env": {**env, "HOME": str(home)},
        # Debian's wrapper adds its own flags; nothing here turns certificate checks off.
        "args": ["--no-first-run", "--no-default-browser-check"],
    }


@pytest.fixture(scope="module")
async def browser(chromium_launch_options):
    """One chromium for the module; each journey opens its own context (its own cookies)."""
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(**chromium_launch_options)
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def screenshot_folder(record_property):
    """Where the journey's screenshots go; reported as a test property and in the terminal summary."""
    record_property("screenshots", str(ARTIFACTS))
    print(f"\nbrowser screenshots: {ARTIFACTS}")
    _screenshot_folders.append(str(ARTIFACTS))
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter):
    if _screenshot_folders:
        terminalreporter.write_sep("-", "browser test screenshots")
        for folder in dict.fromkeys(_screenshot_folders):
            terminalreporter.write_line(folder)
