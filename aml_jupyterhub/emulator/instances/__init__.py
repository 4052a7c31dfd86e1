"""What a compute instance sees from inside: its runtime (startup script, Jupyter), the
managed-identity endpoint, and the Azure ML gateway in front of its Jupyter."""

from .routes import routes
from .runtime import InstanceRuntime

__all__ = ["InstanceRuntime", "routes"]
