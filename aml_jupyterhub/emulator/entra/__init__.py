"""Emulated Microsoft Entra ID (v2 endpoints): sign-in, tokens, directory. See docs/emulator.md."""

from .control import control_routes
from .routes import routes

__all__ = ["control_routes", "routes"]
