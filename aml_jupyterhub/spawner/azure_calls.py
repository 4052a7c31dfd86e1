"""Every Azure ML call the spawner makes: async, on the event loop, with timeouts.

One async azure-core pipeline per identity (the user's delegated ARM
credential) carries reads and writes alike: no thread, no SDK poller,
azure-core's retry policy (429 and 5xx retried, ``Retry-After`` honoured) and
a timeout around each call.

Writes (create, start, stop, delete) return once Azure accepted them. Their
long-running operation is *not* polled: the shared reflector (``reflector.py``)
lists the workspace and sees the instance change. The body of a create is
built by ``specs.compute_instance_body`` from azure-ai-ml's own entities.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

from azure.core import AsyncPipelineClient
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline import policies
from azure.core.rest import HttpRequest

from ..auth.broker import NeedsLogin, TokenUnavailable
from ..azure_http import SharedSession, env_proxies
from . import errors
from .profiles import Workspace
from .snapshots import ComputeSnapshot

API_VERSION = "2023-08-01-preview"
ARM_SCOPE = "https://management.azure.com/.default"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArmEndpoint:
    """Where ARM is (public cloud, a sovereign cloud, or the local emulator)."""

    url: str = "https://management.azure.com"
    ca_bundle: str | None = None
    timeout: float = 60.0


class NameTaken(errors.BadRequest):
    """A create was refused with 409: a compute of that name exists (the caller decides what that means)."""

    def __init__(self) -> None:
        super().__init__("A compute instance with this name already exists")


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
    if isinstance(exc, asyncio.TimeoutError):
        return errors.TimedOut()
    return errors.AzureUnavailable(type(exc).__name__)  # network errors, anything unexpected


class ComputeClient:
    """One workspace's computes as one identity (an AsyncTokenCredential): reads and writes."""

    _locations: ClassVar[dict[str, str]] = {}  # workspace ARM id -> region, read once per hub

    def __init__(self, endpoint: ArmEndpoint, workspace: Workspace, credential: Any) -> None:
        self.endpoint = endpoint
        self.workspace = workspace
        self.credential = credential
        self._pipeline: AsyncPipelineClient | None = None
        self.last_pages = 1  # pages the last list() read

    @property
    def _client(self) -> AsyncPipelineClient:
        """Built on first use, on the event loop that owns the shared session."""
        if self._pipeline is None:
            self._pipeline = AsyncPipelineClient(
                base_url=self.endpoint.url,
                policies=[
                    policies.HeadersPolicy(),
                    policies.UserAgentPolicy("aml-jupyterhub"),
                    policies.ProxyPolicy(env_proxies(self.endpoint.url)),
                    policies.AsyncRetryPolicy(retry_total=3, retry_backoff_factor=0.5, retry_backoff_max=30),
                    policies.AsyncBearerTokenCredentialPolicy(self.credential, ARM_SCOPE),
                ],
                transport=SharedSession.transport(self.endpoint.ca_bundle),
            )
        return self._pipeline

    async def _call(
        self, method: str, url: str, params: dict[str, str] | None = None, body: Any = None, answers: tuple[int, ...] = (404,)
    ) -> tuple[int, dict[str, Any]]:
        """One ARM request (with the pipeline's retries) within the timeout; statuses in ``answers`` are
        returned, other errors raise."""
        if url.startswith("/"):
            url = self.endpoint.url.rstrip("/") + url
        request = HttpRequest(method, url, params=params, **({"json": body} if body is not None else {}))
        try:
            response = await asyncio.wait_for(self._client.send_request(request), self.endpoint.timeout)  # body read in
        except Exception as e:  # noqa: BLE001 - every failure becomes a typed, user-readable error
            log.warning("ARM %s %s failed: %s: %s", method, url.split("?")[0], type(e).__name__, e)
            raise translate_exception(e) from None
        try:
            answer = response.json() if response.content else {}
        except ValueError:
            answer = {}
        answer = answer if isinstance(answer, dict) else {}
        if response.status_code >= 400 and response.status_code not in answers:
            err = answer.get("error") or {}
            raise translate(response.status_code, err.get("code", ""), err.get("message", ""))
        return response.status_code, answer

    def _compute_url(self, name: str, action: str = "") -> str:
        return f"{self.workspace.arm_id}/computes/{name}" + (f"/{action}" if action else "")

    # -- reads -----------------------------------------------------------------------------
    async def get(self, name: str) -> ComputeSnapshot | None:
        status, body = await self._call("GET", self._compute_url(name), {"api-version": API_VERSION})
        return None if status == 404 else ComputeSnapshot.from_rest(body)

    async def list(self) -> list[ComputeSnapshot]:
        """Every compute instance of the workspace (follows nextLink)."""
        snapshots: list[ComputeSnapshot] = []
        url: str | None = f"{self.workspace.arm_id}/computes"
        params: dict[str, str] | None = {"api-version": API_VERSION}
        pages = 0
        while url:
            pages += 1
            status, body = await self._call("GET", url, params)
            if status == 404:
                raise errors.BadRequest(f"Workspace {self.workspace.workspace_name} was not found")
            snapshots += [
                ComputeSnapshot.from_rest(v)
                for v in body.get("value", [])
                if (v.get("properties") or {}).get("computeType") == "ComputeInstance"
            ]
            url, params = body.get("nextLink"), None
        self.last_pages = pages
        return snapshots

    async def location(self) -> str:
        """The workspace's region: from the configuration, else read from ARM once per hub process."""
        if self.workspace.location:
            return self.workspace.location
        key = self.workspace.arm_id.lower()
        if key not in self._locations:
            status, body = await self._call("GET", self.workspace.arm_id, {"api-version": API_VERSION})
            if status == 404 or not body.get("location"):
                raise errors.BadRequest(f"Workspace {self.workspace.workspace_name} was not found")
            self._locations[key] = body["location"]
        return self._locations[key]

    # -- writes: one request each; the reflector watches what follows ---------------------------
    async def create(self, name: str, body: dict[str, Any]) -> ComputeSnapshot | None:
        """PUT the compute; Azure's answer (the resource, state Creating) when it sent one."""
        status, answer = await self._call("PUT", self._compute_url(name), {"api-version": API_VERSION}, body, (404, 409))
        if status == 409:
            raise NameTaken()
        if status == 404:
            raise errors.BadRequest(f"Workspace {self.workspace.workspace_name} was not found")
        return ComputeSnapshot.from_rest(answer) if answer.get("name") else None

    async def start(self, name: str) -> None:
        await self._action(name, "start")

    async def stop(self, name: str) -> None:
        await self._action(name, "stop")

    async def delete(self, name: str) -> None:
        await self._call("DELETE", self._compute_url(name), {"api-version": API_VERSION, "underlyingResourceAction": "Delete"})

    async def _action(self, name: str, action: str) -> None:
        status, _ = await self._call("POST", self._compute_url(name, action), {"api-version": API_VERSION})
        if status == 404:
            raise errors.ComputeFailed(name, "gone", "it was deleted")

    async def close(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.close()
