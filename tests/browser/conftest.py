"""Fixtures for the browser tests: the demo launcher and Debian's chromium (see tests/support/browser.py)."""

from __future__ import annotations

import os

import pytest

from support.browser import ARTIFACTS, DemoLauncher, chromium_executable, trusting_home

os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"  # Debian's chromium only; never a downloaded one

_screenshot_folders: list[str] = []


@pytest.fixture
def demo(tmp_path):
    """What ``make demo`` runs, with its own state in tmp_path and free ports."""
    launcher = DemoLauncher(tmp_path / "demo")
    launcher.workdir.mkdir()
    try:
        yield launcher.start()
    finally:
        launcher.stop()


@pytest.fixture
def chromium_launch_options(demo, tmp_path) -> dict:
    """``chromium.launch()`` arguments: Debian's binary, headless, trusting the emulator's CA.

    HTTPS errors are not ignored: chromium's own NSS database trusts the emulator's CA.
    """
    home = trusting_home(demo.endpoints["ca_bundle"], tmp_path / "chromium-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLAYWRIGHT_BROWSERS")}
    return {
        "executable_path": chromium_executable(),
        "headless": True,
        "env": {**env, "HOME": str(home)},
        # Debian's wrapper adds its own flags; nothing here turns certificate checks off.
        "args": ["--no-first-run", "--no-default-browser-check"],
    }


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
