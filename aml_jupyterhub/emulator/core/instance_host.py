"""Where the ARM service and the instance runtime meet: a compute instance's resource as both read it.

ARM owns compute records and their state machine (:mod:`..arm`); the runtime
(:mod:`..instances`) runs the machines. Neither imports the other: ARM calls the
runtime through :class:`InstanceHost` (``state.instances``, None when no runtime
runs), and both read the resource body through the helpers here.
"""

from __future__ import annotations

from typing import Any, Protocol

#: States in which the instance serves its applications.
SERVING = frozenset({"Running", "JobRunning"})


class StartupFailed(Exception):
    """The instance's startup configuration failed; the message is what Azure would report."""


class InstanceHost(Protocol):
    """What ARM's state machine asks of the runtime that runs instances."""

    def endpoint(self, resource: dict[str, Any]) -> str | None:
        """The base URL of the instance's Jupyter, or None when no machine runs it here."""

    async def bring_up(self, resource: dict[str, Any]) -> None:
        """Run the startup configuration and Jupyter; raise :class:`StartupFailed` on failure."""

    def on_state(self, resource: dict[str, Any]) -> None:
        """The instance entered a new state (leaving Running shuts its machine down)."""

    async def forget(self, resource: dict[str, Any]) -> None:
        """The instance was deleted: remove its machine and disk."""


def inner(resource: dict[str, Any]) -> dict[str, Any]:
    """The ComputeInstance properties (``properties.properties``)."""
    return resource["properties"]["properties"]


def startup_script(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The instance's ``setupScripts.scripts.startupScript``, or None."""
    scripts = (inner(resource).get("setupScripts") or {}).get("scripts") or {}
    return scripts.get("startupScript")


def application_endpoints(host: InstanceHost | None, compute: dict[str, Any]) -> list[dict[str, str]]:
    """The instance's application URLs: Azure's ``https://{name}.{location}.instances.azureml.ms``,
    or the emulated instance's own Jupyter server when a runtime runs it.
    """
    name, location = compute["name"], compute["location"]
    base = host.endpoint(compute) if host is not None else None
    base = base or f"https://{name}.{location}.instances.azureml.ms"
    return [
        {"displayName": "Jupyter", "endpointUri": f"{base}/tree/"},
        {"displayName": "Jupyter Lab", "endpointUri": f"{base}/lab"},
    ]
