"""Emulated Microsoft Graph: ``/me``, group membership, overage resolution."""

from .routes import routes

__all__ = ["routes"]
