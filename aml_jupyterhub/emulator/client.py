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
        """Add a fault (see :class:`aml_jupyterhub.emulator.core.faults.Fault`); returns its id."""
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

    def mark(self) -> float:
        """A point in the request log: pass it as ``since`` to see only what comes after."""
        return self._call("GET", "/clock")["real"]

    def now(self) -> float:
        return self._call("GET", "/clock")["now"]

    def advance_clock(self, seconds: float) -> float:
        return self._call("POST", "/clock", json={"advance_seconds": seconds})["now"]

    def settings(self) -> dict[str, Any]:
        return self._call("GET", "/settings")

    def update_settings(self, **changes: Any) -> dict[str, Any]:
        return self._call("PATCH", "/settings", json=changes)

    # -- entra (Entra ID / Graph controls) --

    def entra_revoke(self, user: str) -> int:
        """Revoke every refresh token of ``user`` (upn or oid), like revokeSignInSessions; returns how many."""
        return self._call("POST", f"/entra/users/{user}/revoke")["revoked"]

    def entra_grant_consent(self, user: str, resource: str, client_id: str | None = None) -> dict[str, Any]:
        """Consent for ``user`` to the app (default: the first configured) using ``resource`` (key or URI)."""
        return self._consent("PUT", user, resource, client_id)

    def entra_withdraw_consent(self, user: str, resource: str, client_id: str | None = None) -> dict[str, Any]:
        """Withdraw that consent: refreshing for ``resource`` then fails with ``consent_required``."""
        return self._consent("DELETE", user, resource, client_id)

    def _consent(self, method: str, user: str, resource: str, client_id: str | None) -> dict[str, Any]:
        params = {"client_id": client_id} if client_id else None
        path = f"/entra/users/{user}/consent/{requests.utils.quote(resource, safe='')}"
        return self._call(method, path, params=params)

    def entra_require_mfa(self, user: str, required: bool = True) -> dict[str, Any]:
        """Demand MFA for ``user``: refresh tokens of sessions without MFA get ``interaction_required``."""
        return self._call("PUT", f"/entra/users/{user}/mfa", json={"required": required})

    def entra_add_user(self, username: str, **fields: Any) -> dict[str, Any]:
        """Add a directory user (``display_name``, ``password``, ``groups``); a new domain is a new tenant."""
        return self._call("POST", "/entra/users", json={"username": username, **fields})

    def entra_set_groups(self, user: str, groups: list[str]) -> dict[str, Any]:
        """Replace the group object ids of ``user``."""
        return self._call("PUT", f"/entra/users/{user}/groups", json={"groups": groups})

    def entra_add_group(self, display_name: str, security_enabled: bool = True) -> str:
        """Add a group to the directory; returns its object id (stable per name)."""
        body = {"display_name": display_name, "security_enabled": security_enabled}
        return self._call("POST", "/entra/groups", json=body)["id"]

    def entra_refresh_tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        """The stored refresh-token records (SHA-256 digests, never tokens), optionally of one user."""
        return self._call("GET", "/entra/refresh-tokens", params={"user": user} if user else None)["refresh_tokens"]

    # -- arm (compute controls) --

    def arm_computes(self) -> list[dict[str, Any]]:
        """Every compute resource, across workspaces."""
        return self._call("GET", "/arm/computes")["computes"]

    def arm_compute(self, name: str) -> dict[str, Any] | None:
        """The compute named ``name`` (in any workspace), or None."""
        return next((c for c in self.arm_computes() if c["name"].lower() == name.lower()), None)

    def arm_force_state(self, name: str, state: str) -> dict[str, Any]:
        """Put a compute into any of the 16 states now (a transition under way ends Canceled)."""
        return self._call("POST", f"/arm/computes/{name}/state", json={"state": state})

    def arm_settle(self, name: str) -> dict[str, Any]:
        """Finish the compute's transition under way now; ``{"compute": ..., "exists": bool}``."""
        return self._call("POST", f"/arm/computes/{name}/settle")

    def arm_idle_shutdown(self, name: str) -> dict[str, Any]:
        """Stop a running compute as its idle-shutdown timer would.

        Refused (409 ``IdleShutdownNotApplied``) for an instance whose managed identity lacks Contributor on
        the workspace, as Azure never idle-stops those.
        """
        return self._call("POST", f"/arm/computes/{name}/idle-shutdown")

    def arm_scheduled_stop(self, name: str) -> dict[str, Any]:
        """Stop a running compute as a start/stop schedule would (Azure stopped it: no identity rule applies)."""
        return self._call("POST", f"/arm/computes/{name}/idle-shutdown", params={"trigger": "Schedule"})

    def arm_fail_next(self, operation: str, state: str, name: str | None = None, **error: str) -> None:
        """Make the next ``operation`` (create|start) of ``name`` (or any) end in ``state`` (CreateFailed|SetupFailed).

        ``code=`` and ``message=`` set the error on the resource and the failed operation.
        """
        self._call("POST", "/arm/fail-next", json={"operation": operation, "state": state, "name": name, **error})

    def arm_set_page_size(self, size: int) -> None:
        """How many computes one list page holds (default 100)."""
        self._call("PUT", "/arm/page-size", json={"size": size})

    def arm_assign_role(self, workspace: str, principal: str, role: str | None) -> None:
        """Give ``principal`` (upn or oid) ``role`` on ``workspace``; None removes the assignment.

        The ``control`` test fixture restores the configuration (roles included) after each test.
        """
        path = f"/arm/workspaces/{workspace}/roles/{principal}"
        if role is None:
            self._call("DELETE", path)
        else:
            self._call("PUT", path, json={"role": role})

    def arm_reset_throttle(self) -> None:
        """Refill every ARM throttle bucket."""
        self._call("DELETE", "/arm/throttle")

    # -- files (Azure Files controls) --

    def files_shares(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every emulated share (optionally of one account): quota, metadata, byte usage, on-disk path."""
        return self._call("GET", "/files/shares", params={"account": account} if account else None)["shares"]

    def files_share(self, account: str, share: str) -> dict[str, Any]:
        """One share, as in :meth:`files_shares`."""
        return self._call("GET", f"/files/shares/{account}/{share}")

    def files_share_path(self, account: str, share: str) -> str:
        """The directory holding the share's bytes (what a mounted view would show)."""
        return self.files_share(account, share)["path"]

    def files_assign_role(self, account: str, principal: str, role: str, share: str | None = None) -> dict[str, str]:
        """Assign a storage role to a principal (object id) on the account, or on one share."""
        params = {"share": share} if share else None
        return self._call("PUT", f"/files/accounts/{account}/roles/{principal}", params=params, json={"role": role})["assignments"]

    def files_remove_role(self, account: str, principal: str, share: str | None = None) -> dict[str, str]:
        """Remove a storage role assignment (account-wide, or on one share)."""
        params = {"share": share} if share else None
        return self._call("DELETE", f"/files/accounts/{account}/roles/{principal}", params=params)["assignments"]

    # -- livy (Apache Livy and Fabric Livy) --

    def livy_sessions(self, flavour: str | None = None) -> list[dict[str, Any]]:
        """Every emulated Livy session (``flavour`` "apache" or "fabric" to filter)."""
        sessions = self._call("GET", "/livy/sessions")["sessions"]
        return [s for s in sessions if flavour is None or s["flavour"] == flavour]

    def livy_settings(self, **changes: Any) -> dict[str, Any]:
        """Change Livy settings (``fabric_idle_seconds``, ``fabric_acquire_polls``, ``basic_username``/``basic_password``)."""
        return self._call("PATCH", "/livy/settings", json=changes) if changes else self._call("GET", "/livy/settings")

    def livy_reset_settings(self) -> dict[str, Any]:
        return self._call("DELETE", "/livy/settings")
