"""Fixtures for tests of the emulated ARM compute service: real MLClients and raw REST, as real users."""

from __future__ import annotations

import functools
import itertools
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessToken

from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.emulator.arm.model import API_VERSION

ARM_SCOPE = "https://management.azure.com/user_impersonation"
FAST = {"create": 0.3, "setup": 0.2, "start": 0.3, "stop": 0.3, "restart": 0.3, "delete": 0.2, "lro_retry_after": None}
_clouds = itertools.count()


class EmulatorUserCredential:
    """A sync TokenCredential minting the user's delegated ARM token through the control API."""

    def __init__(self, control: EmulatorControl, user: str) -> None:
        self.control, self.user = control, user

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.control.mint_token(self.user, ARM_SCOPE), int(time.time()) + 3600)


class StaticCredential:
    """A TokenCredential handing out one fixed token (e.g. an expired one)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, 2**31)


@pytest.fixture
def fast_computes(control: EmulatorControl) -> EmulatorControl:
    """Compute transitions in fractions of a second (settings are restored after the test)."""
    control.update_settings(timings=FAST)
    return control


@pytest.fixture
def ml_client_factory(emulator, fast_computes, monkeypatch) -> Callable:
    """``factory(user, workspace_index=0, credential=None, **mlclient_kwargs)`` -> a real MLClient as ``user``."""
    from azure.ai.ml import MLClient

    # MLClient writes os.environ["AZUREML_CURRENT_CLOUD"]; setenv (unlike delenv of an unset
    # variable) records the old state, so the test's cloud never leaks into later tests or hubs.
    monkeypatch.setenv("AZUREML_CURRENT_CLOUD", "AzureCloud")
    config = emulator.state.config

    def factory(user: str, workspace_index: int = 0, credential: Any = None, **kwargs: Any) -> MLClient:
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


def arm_request(
    emulator: Any,
    control: EmulatorControl,
    method: str,
    path: str,
    user: str = "alice@contoso.example",
    token: str | None = None,
    api_version: str | None = API_VERSION,
    **kwargs: Any,
) -> requests.Response:
    """Raw ARM REST to ``emulator`` as ``user``.

    A freshly minted token unless ``token`` is given (``""`` sends no
    Authorization header); ``api_version=None`` leaves the parameter out.
    """
    url = path if path.startswith("https://") else emulator.endpoints["arm"] + path
    if api_version and "api-version=" not in url:
        url += ("&" if "?" in url else "?") + f"api-version={api_version}"
    token = control.mint_token(user, ARM_SCOPE) if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # verify= per request: REQUESTS_CA_BUNDLE would override a session's verify.
    return requests.request(method, url, headers=headers, verify=emulator.endpoints["ca_bundle"], timeout=30, **kwargs)


@pytest.fixture
def arm_call(emulator, fast_computes) -> Callable[..., requests.Response]:
    """``arm_call(method, path_or_url, user=..., token=None, api_version=..., **requests_kwargs)``: see :func:`arm_request`."""
    return functools.partial(arm_request, emulator, fast_computes)


@pytest.fixture
def compute_name() -> Iterator[str]:
    """A unique, valid compute-instance name (the emulator is shared by the session)."""
    yield unique_name()


def unique_name(prefix: str = "ci") -> str:
    """Another unique, valid compute-instance name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}x"
