"""Inside a Spark kernel: the plug-in's settings (the ``aml_jupyterhub`` section of sparkmagic's config)."""

from __future__ import annotations

from typing import Any

from .config import SECTION


def plugin_settings() -> dict[str, Any]:
    """The section as sparkmagic loaded it (``$SPARKMAGIC_CONF_DIR/config.json``), or {}."""
    import sparkmagic.utils.configuration as conf

    conf.authenticators()  # makes sparkmagic load its config file if it has not yet
    return dict(conf.d.get(SECTION) or {})
