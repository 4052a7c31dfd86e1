"""The in-process emulator every test talks to, and ways to steer it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest

from aml_jupyterhub.emulator import EmulatorThread, default_config
from aml_jupyterhub.emulator.client import EmulatorControl


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorThread]:
    """One emulator for the whole session, on its own thread and loop.

    Tests share it, so they use unique resource names; faults and settings are
    undone after each test by :func:`control`.
    """
    emu = EmulatorThread(config=default_config(), tls_dir=tmp_path_factory.mktemp("emulator-tls"))
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def ca_bundle(emulator: EmulatorThread) -> str:
    return emulator.endpoints["ca_bundle"]


@pytest.fixture
def control(emulator: EmulatorThread) -> Iterator[EmulatorControl]:
    """The control API; faults, clock and settings are restored after the test."""
    ctl = EmulatorControl(emulator.endpoints["control"], emulator.endpoints["ca_bundle"])
    saved = emulator.call(lambda: (copy.deepcopy(emulator.state.config), emulator.state.clock_offset))

    def restore() -> None:
        emulator.state.config, emulator.state.clock_offset = saved

    yield ctl
    ctl.clear_faults()
    emulator.call(restore)


@pytest.fixture
def fresh_emulator(tmp_path: Path) -> Iterator[EmulatorThread]:
    """A private emulator persisting to ``tmp_path/state`` (for restart and isolation tests)."""
    emu = EmulatorThread(config=default_config(), data_dir=tmp_path / "state")
    emu.start()
    yield emu
    emu.stop()
