"""A small client for the emulator's control API, for tests, the demo and benchmarks."""

from __future__ import annotations

from typing import Any

import requests


class EmulatorControl:
    def __init__(self, control_url: str, ca_bundle: str) -> None:
        self.base = control_url.rstrip("/") + "/_emulator"
        self.ca_bundle = ca_bundle
        self.session = requests.Session()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        # verify= per request: requests lets REQUESTS_CA_BUNDLE override Session.verify.
        r = self.session.request(method, self.base + path, timeout=30, verify=self.ca_bundle, **kwargs)
        r.raise_for_status()
        return r.json()

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def state(self) -> dict[str, Any]:
        return self._call("GET", "/state")["data"]

    def reset(self) -> None:
        self._call("POST", "/reset")

    def inject(self, **fault: Any) -> int:
        """Add a fault (see :class:`aml_jupyterhub.emulator.faults.Fault`); returns its id."""
        return self._call("POST", "/faults", json=fault)["id"]

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")["faults"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def requests(self, since: float = 0.0, service: str | None = None) -> list[dict[str, Any]]:
        params = {"since": since, **({"service": service} if service else {})}
        return self._call("GET", "/requests", params=params)["requests"]

    def request_counts(self, since: float = 0.0, service: str | None = None) -> dict[str, Any]:
        params = {"since": since, **({"service": service} if service else {})}
        return self._call("GET", "/requests/counts", params=params)

    def clear_requests(self) -> None:
        self._call("DELETE", "/requests")

    def mint_token(self, user: str, scope: str, lifetime: int | None = None) -> str:
        """A delegated access token for ``user`` (test shortcut, no sign-in)."""
        body = {"user": user, "scope": scope, **({"lifetime": lifetime} if lifetime else {})}
        return self._call("POST", "/token", json=body)["access_token"]

    def now(self) -> float:
        return self._call("GET", "/clock")["now"]

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "/clock", json={"advance_seconds": seconds})["now"]

    def settings(self) -> dict[str, Any]:
        return self._call("GET", "/settings")

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "/settings", json=changes)

    # -- entra (Entra ID / Graph controls) --

    # -- arm (compute controls) --

    # -- files (Azure Files controls) --
