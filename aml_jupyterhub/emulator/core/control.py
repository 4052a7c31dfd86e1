"""The control API (``/_emulator/...``): inspect state, inject faults, steer the clock.

Tests and the demo use it through :class:`aml_jupyterhub.emulator.client.EmulatorControl`.
It listens on loopback only and has no authentication: it is a test fixture,
never something to expose.
"""

from __future__ import annotations

import time
from dataclasses import fields

from .faults import Fault
from .handlers import EmulatorHandler, ServiceError
from .state import EmulatorState
from .tokens import EntraError, access_token, parse_scopes


class ControlHandler(EmulatorHandler):
    """Control endpoints answer errors in ARM's JSON shape (the base default)."""


class Health(ControlHandler):
    def get(self) -> None:
        self.send_json(200, {"status": "ok", "endpoints": self.state.urls})


class StateView(ControlHandler):
    def get(self) -> None:
        self.send_json(200, {"now": self.state.now(), "data": self.state.data})


class Reset(ControlHandler):
    def post(self) -> None:
        self.state.reset()
        self.send_json(200, {"reset": True})


_FAULT_FIELDS = {f.name for f in fields(Fault)} - {"id", "hits"}


class Faults(ControlHandler):
    def get(self) -> None:
        self.send_json(200, {"faults": self.state.faults.describe()})

    def post(self) -> None:
        spec = self.json_body()
        unknown = set(spec) - _FAULT_FIELDS
        if unknown:
            raise ServiceError(400, "InvalidFault", f"Unknown fault fields: {sorted(unknown)}")
        try:
            fault = self.state.faults.add(**spec)
        except (TypeError, ValueError) as e:
            raise ServiceError(400, "InvalidFault", str(e)) from e
        self.send_json(201, {"id": fault.id})

    def delete(self) -> None:
        self.state.faults.remove()
        self.send_json(200, {"faults": []})


class FaultItem(ControlHandler):
    def delete(self, fault_id: str) -> None:
        self.state.faults.remove(int(fault_id))
        self.send_json(200, {"removed": int(fault_id)})


class Requests(ControlHandler):
    def get(self) -> None:
        since = float(self.get_argument("since", "0"))
        service = self.get_argument("service", None)
        self.send_json(200, {"requests": self.state.log.as_dicts(since, service)})

    def delete(self) -> None:
        self.state.log.clear()
        self.send_json(200, {"requests": []})


class RequestCounts(ControlHandler):
    def get(self) -> None:
        since = float(self.get_argument("since", "0"))
        service = self.get_argument("service", None)
        self.send_json(200, self.state.log.counts(since, service))


class Clock(ControlHandler):
    """The emulated clock (``now``, which tests may advance) and wall time (``real``, which the request log uses)."""

    def get(self) -> None:
        self.send_json(200, {"now": self.state.now(), "offset": self.state.clock_offset, "real": time.time()})

    def post(self) -> None:
        advance = float(self.json_body().get("advance_seconds", 0))
        self.state.clock_offset += advance
        self.state.mark_dirty()
        self.send_json(200, {"now": self.state.now(), "offset": self.state.clock_offset})


class Settings(ControlHandler):
    """Read or change scalar settings (token lifetimes, timings, throttle rates) at run time."""

    def get(self) -> None:
        self.send_json(200, self.state.config.to_dict())

    def patch(self) -> None:
        changes = self.json_body()
        config = self.state.config
        for key, value in changes.items():
            target = getattr(config, key, None)
            if isinstance(value, dict) and target is not None and hasattr(target, "__dataclass_fields__"):
                for sub_key, sub_value in value.items():
                    if sub_key not in target.__dataclass_fields__:
                        raise ServiceError(400, "InvalidSetting", f"Unknown setting {key}.{sub_key}")
                    setattr(target, sub_key, sub_value)
            elif key in config.__dataclass_fields__ and not isinstance(target, list):
                setattr(config, key, value)
            else:
                raise ServiceError(400, "InvalidSetting", f"Unknown or non-scalar setting {key}")
        self.send_json(200, config.to_dict())


class MintToken(ControlHandler):
    """A test shortcut: a delegated token for a configured user, without a sign-in.

    For tests that are about a resource, not about signing in; the sign-in
    tests use the real authorize/token endpoints.
    """

    def post(self) -> None:
        spec = self.json_body()
        config = self.state.config
        user = config.user(spec.get("user", ""))
        if user is None:
            raise ServiceError(404, "UnknownUser", "No such user in the emulated directory.")
        app = config.app(spec["client_id"]) if spec.get("client_id") else config.apps[0]
        if app is None:
            raise ServiceError(404, "UnknownApp", "No such app registration.")
        try:
            request = parse_scopes(spec.get("scope", ""))
        except EntraError as e:
            raise ServiceError(400, e.error, e.description) from e
        if request.resource is None:
            raise ServiceError(400, "invalid_scope", "Name one resource scope.")
        token, expires_in = access_token(
            self.state, user, app, request.resource, request.permissions, spec.get("lifetime")
        )
        self.send_json(200, {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"})


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (r"/_emulator/health", Health, kw),
        (r"/_emulator/state", StateView, kw),
        (r"/_emulator/reset", Reset, kw),
        (r"/_emulator/faults", Faults, kw),
        (r"/_emulator/faults/(\d+)", FaultItem, kw),
        (r"/_emulator/requests", Requests, kw),
        (r"/_emulator/requests/counts", RequestCounts, kw),
        (r"/_emulator/clock", Clock, kw),
        (r"/_emulator/settings", Settings, kw),
        (r"/_emulator/token", MintToken, kw),
    ]
