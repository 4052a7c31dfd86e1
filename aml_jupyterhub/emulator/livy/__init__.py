"""Emulated Spark endpoints: Apache Livy (``routes``) and Microsoft Fabric's Livy API (:mod:`.fabric`)."""

from .control import control_routes
from .routes import routes

__all__ = ["control_routes", "routes"]
