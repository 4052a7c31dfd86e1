"""Fixtures for tests of the emulated ARM compute service: real MLClients as real users."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.core.credentials import AccessToken

from aml_jupyterhub.emulator.client import EmulatorControl

ARM_SCOPE = "https://management.azure.com/user_impersonation"
FAST = {"create": 0.3, "setup": 0.2, "start": 0.3, "stop": 0.3, "restart": 0.3, "delete": 0.2, "lro_retry_after": None}
_clouds = itertools.count()


class EmulatorUserCredential:
    """A sync TokenCredential minting the user's delegated ARM token through the control API."""

    def __init__(self, control: EmulatorControl, user: str) -> None:
        self.control, self.user = control, user

    def get_token(self, *scopes: str, **kwargs) -> AccessToken:
        return AccessToken(self.control.mint_token(self.user, ARM_SCOPE), int(time.time()) + 3600)


@pytest.fixture
def fast_computes(control: EmulatorControl) -> EmulatorControl:
    """Compute transitions in fractions of a second (restored after the test)."""
    control.update_settings(timings=FAST)
    return control


@pytest.fixture
def ml_client_factory(emulator, fast_computes, monkeypatch) -> Callable:
    """``factory(user, workspace_index=0)`` -> a real MLClient acting as ``user`` against the emulator."""
    from azure.ai.ml import MLClient

    monkeypatch.delenv("AZUREML_CURRENT_CLOUD", raising=False)
    config = emulator.state.config

    def factory(user: str, workspace_index: int = 0, credential=None, **kwargs) -> MLClient:
        ws = config.workspaces[workspace_index]
        return MLClient(
            credential or EmulatorUserCredential(fast_computes, user),
            ws.subscription_id,
            ws.resource_group,
            ws.name,
            cloud=f"AmlEmulator{next(_clouds)}",  # a cloud name registers once per process
            cloud_metadata={
                "resource_manager": emulator.endpoints["arm"] + "/",
                "active_directory": "https://login.microsoftonline.com",
                "azure_portal": "https://portal.azure.com",
                "aml_resource_id": "https://ml.azure.com",
                "storage_endpoint": "core.windows.net",
                "registry_discovery_endpoint": "https://eastus.api.azureml.ms",
            },
            connection_verify=emulator.endpoints["ca_bundle"],
            enable_telemetry=False,
            polling_interval=0.05,
            **kwargs,
        )

    return factory


@pytest.fixture
def compute_name() -> Iterator[str]:
    """A unique, valid compute-instance name (the emulator is shared by the session)."""
    yield "ci-" + uuid.uuid4().hex[:10] + "x"
