"""``AMLSpawner``: each JupyterHub user's own Azure ML compute instance."""

from .profiles import Profile, Workspace
from .spawner import AMLSpawner
from .specs import Owner

__all__ = ["AMLSpawner", "Owner", "Profile", "Workspace"]
