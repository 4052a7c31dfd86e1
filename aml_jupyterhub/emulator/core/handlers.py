"""The base of every emulated endpoint: request ids, faults, the request log, typed errors."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import sys
import time
import uuid
from typing import Any

from tornado import web

from .keys import unverified_claims
from .state import EmulatorState, RequestRecord


class ServiceError(Exception):
    """Raise in a handler to answer with ``status`` in the service's own error format."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


class EmulatorHandler(web.RequestHandler):
    """Subclasses override :meth:`error_body` to speak their service's error dialect."""

    state: EmulatorState

    def initialize(self, state: EmulatorState) -> None:
        self.state = state
        self.principal = "anonymous"

    @property
    def service(self) -> str:
        return self.application.settings["service"]

    @property
    def route(self) -> str:
        return type(self).__name__

    # -- every request -------------------------------------------------------
    def set_default_headers(self) -> None:
        # Tornado calls this from __init__ (before initialize) and from clear().
        if not hasattr(self, "request_id"):
            self.request_id = str(uuid.uuid4())
        self.set_header("x-ms-request-id", self.request_id)
        correlation = self.request.headers.get("x-ms-correlation-request-id") or self.request_id
        self.set_header("x-ms-correlation-request-id", correlation)
        client_id = self.request.headers.get("x-ms-client-request-id")
        if client_id:
            self.set_header("x-ms-client-request-id", client_id)

    def _principal_hints(self) -> set[str]:
        auth = self.request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return set()
        claims = unverified_claims(auth[7:].strip())
        return {str(claims[k]).lower() for k in ("oid", "upn", "unique_name", "appid") if claims.get(k)}

    async def prepare(self) -> None:
        hints = self._principal_hints()
        fault = self.state.faults.take(self.service, self.request.method, self.request.path, self.route, hints)
        if fault is None:
            return
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.reset:
            self._reset_connection()
            return
        if fault.status:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            raise ServiceError(
                fault.status,
                fault.error_code or self.default_error_code(fault.status),
                fault.message or f"Injected fault {fault.id}.",
                headers,
            )

    def _reset_connection(self) -> None:
        stream = self.request.connection.detach()
        sock = stream.socket
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()
        self._finished = True
        self._record(0)

    def on_finish(self) -> None:
        self._record(self.get_status())

    def _record(self, status: int) -> None:
        self.state.log.add(
            RequestRecord(
                time=time.time(),  # wall time: the emulated clock can jump (see Clock)
                service=self.service,
                method=self.request.method or "",
                path=self.request.path,
                route=self.route,
                status=status,
                principal=self.principal,
                duration_ms=round(self.request.request_time() * 1000, 2),
            )
        )

    # -- answers -------------------------------------------------------------
    def send_json(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.set_status(status)
        for k, v in (headers or {}).items():
            self.set_header(k, v)
        if body is not None:
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(body))
        else:
            self.finish()

    def json_body(self) -> Any:
        if not self.request.body:
            return {}
        try:
            return json.loads(self.request.body)
        except ValueError as e:
            raise ServiceError(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {e}") from e

    def default_error_code(self, status: int) -> str:
        return {
            400: "BadRequest",
            401: "AuthenticationFailed",
            403: "AuthorizationFailed",
            404: "NotFound",
            409: "Conflict",
            429: "TooManyRequests",
            500: "InternalServerError",
            502: "BadGateway",
            503: "ServiceUnavailable",
            504: "GatewayTimeout",
        }.get(status, "Error")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        """ARM's shape by default; services with another dialect override this."""
        body = {"error": {"code": error.code, "message": error.message, **error.extra}}
        return "application/json; charset=utf-8", json.dumps(body).encode()

    def send_service_error(self, error: ServiceError) -> None:
        if self._finished:
            return
        self.clear()  # also re-applies set_default_headers()
        self.set_status(error.status)
        for k, v in error.headers.items():
            self.set_header(k, v)
        content_type, body = self.error_body(error)
        self.set_header("Content-Type", content_type)
        self.finish(body if self.request.method != "HEAD" else None)

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, ServiceError):
            self.send_service_error(e)
        elif isinstance(e, web.Finish):
            super()._handle_request_exception(e)
        elif isinstance(e, web.HTTPError) and e.status_code < 500:
            self.send_service_error(ServiceError(e.status_code, self.default_error_code(e.status_code), e.log_message or ""))
        else:
            self.log_exception(*sys.exc_info())
            self.send_service_error(ServiceError(500, "InternalServerError", "The server encountered an internal error."))


class NotFoundHandler(EmulatorHandler):
    """Any path a service does not implement: its own 404, logged like the rest."""

    async def prepare(self) -> None:
        await super().prepare()
        raise ServiceError(404, "NotFound", f"No route for {self.request.method} {self.request.path}.")


def safe_log_function(handler: web.RequestHandler) -> None:
    """Tornado's access log without query strings (they can carry a SAS signature or a code)."""
    status = handler.get_status()
    log_method = web.access_log.info if status < 400 else web.access_log.warning
    log_method(
        "%d %s %s %.1fms",
        status,
        handler.request.method,
        handler.request.path,
        1000.0 * handler.request.request_time(),
    )

