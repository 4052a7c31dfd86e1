"""Emulated Azure Resource Manager for Azure ML: workspaces and compute instances."""

from .control import control_routes
from .routes import on_start, routes

__all__ = ["control_routes", "on_start", "routes"]
