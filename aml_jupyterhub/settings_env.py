"""Reading a deployment's settings from the environment (for ``jupyterhub_config.py`` files)."""

from __future__ import annotations

import os


def required(name: str) -> str:
    """A setting the deployment cannot do without: stop the hub at startup, naming it."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise SystemExit(f"{name} is not set (see deployments/env.template)")
    return value


def optional(name: str, default: str = "") -> str:
    """A setting with a default; an empty variable counts as unset."""
    return os.environ.get(name, "").strip() or default


def workspace_from_env(key: str = "main") -> dict[str, dict[str, str]]:
    """``AMLSpawner.workspaces`` for one workspace named by ``AML_WORKSPACE_*``."""
    return {
        key: {
            "subscription_id": required("AML_WORKSPACE_SUBSCRIPTION_ID"),
            "resource_group": required("AML_WORKSPACE_RESOURCE_GROUP"),
            "workspace_name": required("AML_WORKSPACE_NAME"),
            "location": optional("AML_WORKSPACE_LOCATION", ""),
        }
    }
