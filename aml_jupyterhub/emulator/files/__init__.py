"""Emulated Azure Files (the FileREST data plane and share management)."""

from .control import control_routes
from .routes import on_start, routes

__all__ = ["control_routes", "on_start", "routes"]
