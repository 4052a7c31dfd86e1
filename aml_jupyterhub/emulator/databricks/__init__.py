"""Emulated Azure Databricks Jobs API (run-now, runs/get, list)."""

from .routes import routes

__all__ = ["routes"]
