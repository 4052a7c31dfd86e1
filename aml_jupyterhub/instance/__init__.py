"""What runs on a compute instance: the startup agent and its hub credential (docs/user-space.md)."""

from __future__ import annotations

import json
from typing import Any

from .hub_token import state_dir


def settings() -> dict[str, Any]:
    """The admin's non-secret settings for code on this instance (``AMLSpawner.instance_settings``)."""
    try:
        return json.loads((state_dir() / "settings.json").read_text())
    except (OSError, ValueError):
        return {}
