"""Every Azure ML call the spawner makes, off the event loop and with timeouts.

- Reads (get one compute, list a workspace) use an async azure-core pipeline
  on the raw REST shape: no thread, azure-core's retry policy (Retry-After
  honoured), and the full error text Azure puts on a failed instance.
- Writes (create, start, stop, delete) use azure-ai-ml's ``MLClient`` — sync
  only — in a bounded, shared thread pool. Each ``begin_*`` returns once Azure
  accepted the request; the shared poller (``reflector.py``) watches progress.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.core import AsyncPipelineClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.core.pipeline import policies
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.rest import HttpRequest

from ..auth.broker import NeedsLogin, TokenUnavailable
from . import errors
from .profiles import Workspace
from .snapshots import ComputeSnapshot

API_VERSION = "2023-08-01-preview"
log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class ArmEndpoint:
    """Where ARM is (public cloud, a sovereign cloud, or the local emulator)."""

    url: str = "https://management.azure.com"
    ca_bundle: str | None = None
    timeout: float = 60.0

    @property
    def cloud_name(self) -> str:
        """A unique cloud name per endpoint: azure-ai-ml registers a cloud name once per process."""
        return "AmlJupyterHub" + hashlib.sha256(self.url.encode()).hexdigest()[:10]


def translate(status: int | None, code: str, message: str) -> errors.ComputeError:
    """Azure's answer -> the typed error with the user's message."""
    if status == 401:
        return errors.SignInExpired(message)
    if status == 403:
        return errors.PermissionDenied(message)
    if status == 429:
        return errors.Throttled()
    if status is not None and status >= 500:
        return errors.AzureUnavailable(f"HTTP {status} {code}".strip())
    if "quota" in code.lower() or "quota" in message.lower():
        return errors.QuotaExceeded(message)
    return errors.BadRequest(f"{code}: {message}" if code else message)


def translate_exception(exc: BaseException) -> errors.ComputeError:
    if isinstance(exc, errors.ComputeError):
        return exc
    if isinstance(exc, NeedsLogin):
        return errors.SignInExpired(str(exc))
    if isinstance(exc, TokenUnavailable):
        return errors.EntraUnavailable(str(exc))
    if isinstance(exc, ClientAuthenticationError):
        return errors.SignInExpired()
    if isinstance(exc, HttpResponseError):
        error = getattr(exc, "error", None)
        return translate(exc.status_code, getattr(error, "code", "") or "", getattr(error, "message", "") or exc.reason or "")
    return errors.AzureUnavailable(type(exc).__name__)  # network errors, timeouts, anything unexpected


class ComputeReader:
    """Async reads of one workspace's computes as one identity (an AsyncTokenCredential)."""

    def __init__(self, endpoint: ArmEndpoint, workspace: Workspace, credential: Any) -> None:
        self.endpoint = endpoint
        self.workspace = workspace
        self._client = AsyncPipelineClient(
            base_url=endpoint.url,
            policies=[
                policies.HeadersPolicy(),
                policies.UserAgentPolicy("aml-jupyterhub"),
                policies.AsyncRetryPolicy(retry_total=3, retry_backoff_factor=0.5, retry_backoff_max=30),
                policies.AsyncBearerTokenCredentialPolicy(credential, "https://management.azure.com/.default"),
            ],
            transport=AioHttpTransport(connection_verify=endpoint.ca_bundle or True),
        )

    async def _get_json(self, url: str, params: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        if url.startswith("/"):
            url = self.endpoint.url.rstrip("/") + url
        request = HttpRequest("GET", url, params=params)
        try:
            response = await asyncio.wait_for(self._client.send_request(request), self.endpoint.timeout)
            await response.read()
        except Exception as e:  # noqa: BLE001 - every failure becomes a typed, user-readable error
            log.warning("ARM GET %s failed: %s: %s", url.split("?")[0], type(e).__name__, e)
            raise translate_exception(e) from None
        body = response.json() if response.content else {}
        if response.status_code >= 400 and response.status_code != 404:
            err = body.get("error", {}) if isinstance(body, dict) else {}
            raise translate(response.status_code, err.get("code", ""), err.get("message", ""))
        return response.status_code, body

    async def get(self, name: str) -> ComputeSnapshot | None:
        status, body = await self._get_json(f"{self.workspace.arm_id}/computes/{name}", {"api-version": API_VERSION})
        return None if status == 404 else ComputeSnapshot.from_rest(body)

    async def list(self) -> list[ComputeSnapshot]:
        """Every compute instance of the workspace (follows nextLink)."""
        snapshots: list[ComputeSnapshot] = []
        url: str | None = f"{self.workspace.arm_id}/computes"
        params: dict[str, str] | None = {"api-version": API_VERSION}
        while url:
            status, body = await self._get_json(url, params)
            if status == 404:
                raise errors.BadRequest(f"Workspace {self.workspace.workspace_name} was not found")
            snapshots += [
                ComputeSnapshot.from_rest(v)
                for v in body.get("value", [])
                if (v.get("properties") or {}).get("computeType") == "ComputeInstance"
            ]
            url, params = body.get("nextLink"), None
        return snapshots

    async def close(self) -> None:
        await self._client.close()


class ComputeWriter:
    """azure-ai-ml writes for one workspace as one identity (a sync TokenCredential), in a thread pool."""

    def __init__(self, endpoint: ArmEndpoint, workspace: Workspace, credential: Any, executor: ThreadPoolExecutor) -> None:
        self.endpoint = endpoint
        self.workspace = workspace
        self.credential = credential
        self.executor = executor
        self._ml_client: Any = None

    def _client(self) -> Any:
        if self._ml_client is None:
            from azure.ai.ml import MLClient  # ~1.5 s import: only ever in a worker thread

            self._ml_client = MLClient(
                self.credential,
                subscription_id=self.workspace.subscription_id,
                resource_group_name=self.workspace.resource_group,
                workspace_name=self.workspace.workspace_name,
                cloud=self.endpoint.cloud_name,
                cloud_metadata={
                    "resource_manager": self.endpoint.url.rstrip("/") + "/",
                    "active_directory": "https://login.microsoftonline.com",
                    "azure_portal": "https://portal.azure.com",
                    "aml_resource_id": "https://ml.azure.com",
                    "storage_endpoint": "core.windows.net",
                    "registry_discovery_endpoint": "https://eastus.api.azureml.ms",
                },
                connection_verify=self.endpoint.ca_bundle or True,
                enable_telemetry=False,
            )
        return self._ml_client

    async def _run(self, fn: Callable[[Any], T]) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, lambda: fn(self._client()))
        try:
            return await asyncio.wait_for(future, self.endpoint.timeout)
        except Exception as e:  # noqa: BLE001
            if isinstance(e, ResourceExistsError):
                raise errors.BadRequest("A compute instance with this name already exists") from None
            raise translate_exception(e) from None

    async def begin_create(self, spec: Any) -> None:
        await self._run(lambda c: c.compute.begin_create_or_update(spec))

    async def begin_start(self, name: str) -> None:
        await self._run(lambda c: c.compute.begin_start(name))

    async def begin_stop(self, name: str) -> None:
        await self._run(lambda c: c.compute.begin_stop(name))

    async def begin_delete(self, name: str) -> None:
        await self._run(lambda c: c.compute.begin_delete(name))
