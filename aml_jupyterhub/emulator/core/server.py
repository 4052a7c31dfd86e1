"""Run the emulated services: one HTTPS port each on 127.0.0.1, sharing one state.

One port per service keeps every URL shaped as the real SDKs expect: the
authority's first path segment is the tenant (MSAL, oauthenticator), a Files
URL's first segment is the account, and ARM paths start at ``/subscriptions``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import socket
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tornado import httpserver, netutil, web
from tornado.ioloop import PeriodicCallback

from .config import EmulatorConfig, default_config
from .handlers import NotFoundHandler, safe_log_function
from .state import EmulatorState
from .tls import ensure_tls

log = logging.getLogger("aml_jupyterhub.emulator")


@dataclass(frozen=True)
class Service:
    """An emulated Azure service: the JSON key of its URL and its module (under the emulator package).

    The module provides ``routes(state) -> list`` of tornado rules and may
    provide ``control_routes(state)`` (mounted on the control port, under
    ``/_emulator/``) and ``on_start(state)``, called on the emulator's loop
    once serving. Services are loaded by name: ``core`` imports none of them.
    """

    name: str
    module: str


SERVICES: tuple[Service, ...] = (
    Service("authority", "entra"),
    Service("graph", "graph"),
    Service("arm", "arm"),
    Service("files", "files"),
    Service("instances", "instances"),
    Service("databricks", "databricks"),
    Service("livy", "livy"),
    Service("fabric", "livy.fabric"),
    Service("control", "core.control"),
)
#: The package that runs compute instances (its ``InstanceRuntime``), when the runtime is on.
INSTANCE_RUNTIME = "instances"
EMULATOR_PACKAGE = __package__.rsplit(".", 1)[0]


def _load(module: str):
    return importlib.import_module(f"{EMULATOR_PACKAGE}.{module}")


class Emulator:
    """The emulator on the current event loop. See :class:`EmulatorThread` for tests."""

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        data_dir: Path | None = None,
        tls_dir: Path | None = None,
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
        instance_runtime: bool = False,
    ) -> None:
        self.state = EmulatorState(config or default_config(), data_dir)
        self.instance_runtime = instance_runtime
        self.tls = ensure_tls(tls_dir or (data_dir / "tls" if data_dir else self.state.files_root.parent / "tls"))
        self.host = host
        self.ports = ports or {}
        self._servers: list[httpserver.HTTPServer] = []
        self._flusher: PeriodicCallback | None = None

    @property
    def endpoints(self) -> dict[str, Any]:
        """What the emulator prints on start: service URLs and the CA bundle."""
        return {**self.state.urls, "ca_bundle": str(self.tls.ca_bundle)}

    async def start(self) -> dict[str, Any]:
        ssl_ctx = self.tls.server_context()
        control_rules = [
            rule for service in SERVICES for rule in getattr(_load(service.module), "control_routes", lambda s: [])(self.state)
        ]
        for service in SERVICES:
            module = _load(service.module)
            sockets = netutil.bind_sockets(self.ports.get(service.name, 0), self.host, family=socket.AF_INET)
            port = sockets[0].getsockname()[1]
            self.state.urls[service.name] = f"https://{self.host}:{port}"
            rules = module.routes(self.state)
            if service.name == "control":
                rules = [*rules, *control_rules]
            rules = [*rules, (r".*", NotFoundHandler, {"state": self.state})]
            app = web.Application(rules, service=service.name, log_function=safe_log_function)
            server = httpserver.HTTPServer(app, ssl_options=ssl_ctx, xheaders=False)
            server.add_sockets(sockets)
            self._servers.append(server)
        if self.instance_runtime:
            self._start_instance_runtime()
        for service in SERVICES:
            on_start: Callable[[EmulatorState], None] | None = getattr(_load(service.module), "on_start", None)
            if on_start:
                on_start(self.state)
        if self.state.instances is not None:
            self.state.instances.revive()
        self._flusher = PeriodicCallback(self.state.flush, 500)
        self._flusher.start()
        return self.endpoints

    def _start_instance_runtime(self) -> None:
        """Compute instances get a sandbox home, run their startup script and serve a real Jupyter."""
        root = (self.state.data_dir or self.state.files_root.parent) / "instances"
        runtime = _load(INSTANCE_RUNTIME).InstanceRuntime(self.state, self.tls, root)
        self.state.instances = runtime

        self.state.reset_hooks.append(runtime.forget_all)

    async def set_instance_runtime(self, enabled: bool) -> None:
        """Turn the instance runtime on or off (tests that need real instances)."""
        if enabled and self.state.instances is None:
            self._start_instance_runtime()
        elif not enabled and self.state.instances is not None:
            await self.state.instances.stop_all()
            self.state.instances = None

    async def stop(self) -> None:
        if self.state.instances is not None:
            await self.state.instances.stop_all()
        if self._flusher:
            self._flusher.stop()
        for server in self._servers:
            server.stop()
            await server.close_all_connections()
        self._servers.clear()
        self.state.flush()


class EmulatorThread:
    """The emulator on its own event loop in a daemon thread.

    Tests need this: synchronous SDK clients (MLClient) block their caller, so
    the emulator must not share the test's event loop.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.emulator = Emulator(**kwargs)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="azure-emulator", daemon=True)

    @property
    def state(self) -> EmulatorState:
        return self.emulator.state

    @property
    def endpoints(self) -> dict[str, Any]:
        return self.emulator.endpoints

    def start(self) -> dict[str, Any]:
        self._thread.start()
        return self.call(self.emulator.start)

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 30) -> Any:
        """Run ``fn(*args)`` (sync or async) on the emulator's loop and return its result."""

        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        future: Future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(timeout)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self.call(self.emulator.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def endpoints_line(endpoints: dict[str, Any]) -> str:
    return json.dumps({"emulator": endpoints}, sort_keys=True)
