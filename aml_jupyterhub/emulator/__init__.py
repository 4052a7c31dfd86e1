"""A local, faithful Azure for tests and the demo: Entra ID, Graph, ARM compute, Azure Files.

Run it with ``python -m aml_jupyterhub.emulator`` (prints one JSON line with its
endpoints), or in-process with :class:`EmulatorThread`.
"""

from .core.config import EmulatorConfig, default_config
from .core.server import Emulator, EmulatorThread

__all__ = ["Emulator", "EmulatorConfig", "EmulatorThread", "default_config"]
