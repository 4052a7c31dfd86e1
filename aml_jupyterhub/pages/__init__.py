"""Hub pages that replace JupyterHub's own where a user would otherwise meet a dead end."""

from .spawn import SpawnPage, spawn_page_handlers

__all__ = ["SpawnPage", "spawn_page_handlers"]
