"""The emulated directory's control API (``/_emulator/entra/...``): users, groups, MFA, consent, sessions."""

from __future__ import annotations

from typing import Any

from ..core.config import App, Group, Tenant, User, stable_id
from ..core.control import ControlHandler
from ..core.handlers import ServiceError
from ..core.state import EmulatorState
from .model import Consents, RefreshTokens, resource_named


def user_view(user: User) -> dict[str, Any]:
    """A directory user as the control API shows it (never the password)."""
    return {"username": user.username, "oid": user.oid, "tenant_id": user.tenant_id, "display_name": user.display_name,
            "groups": list(user.groups), "mfa_required": user.mfa_required}


class EntraControl(ControlHandler):
    """Control endpoints of the emulated directory; the ``control`` fixture restores the config after a test."""

    def directory_user(self, name: str) -> User:
        """A user by upn or oid, or 404."""
        user = self.state.config.user(name)
        if user is None:
            raise ServiceError(404, "UnknownUser", "No such user in the emulated directory.")
        return user

    def app_from_query(self) -> App:
        """The app ``?client_id=`` names (default: the first configured), or 404."""
        client_id = self.get_query_argument("client_id", None)
        app = self.state.config.app(client_id) if client_id else self.state.config.apps[0]
        if app is None:
            raise ServiceError(404, "UnknownApp", "No such app registration.")
        return app

    def known_groups(self, ids: list[str]) -> list[str]:
        """``ids`` if every group exists, else 404."""
        unknown = [g for g in ids if self.state.config.group(g) is None]
        if unknown:
            raise ServiceError(404, "UnknownGroup", f"No such groups: {unknown}")
        return ids


class RevokeSessions(EntraControl):
    """``POST users/{user}/revoke``: revokeSignInSessions, every refresh token and browser session of the user."""

    def post(self, name: str) -> None:
        user = self.directory_user(name)
        sessions = self.state.section("entra_sessions")
        for session_id in [k for k, v in sessions.items() if v["oid"] == user.oid]:
            del sessions[session_id]  # browser sign-in sessions go too: the next sign-in asks again
        self.send_json(200, {"revoked": RefreshTokens(self.state).revoke_user(user.oid)})


class ConsentControl(EntraControl):
    """``PUT|DELETE users/{user}/consent/{resource}[?client_id=]``: grant or withdraw delegated consent."""

    def _change(self, name: str, resource_name: str, consented: bool) -> None:
        """Grant or withdraw, and answer with what changed."""
        user, app = self.directory_user(name), self.app_from_query()
        resource = resource_named(resource_name)
        if resource is None:
            raise ServiceError(404, "UnknownResource", f"No such resource: {resource_name}")
        Consents(self.state).set(app, user, [resource.key], consented)
        self.send_json(200, {"user": user.username, "client_id": app.client_id, "resource": resource.key,
                             "consented": consented})

    def put(self, name: str, resource_name: str) -> None:
        self._change(name, resource_name, True)

    def delete(self, name: str, resource_name: str) -> None:
        self._change(name, resource_name, False)


class MfaControl(EntraControl):
    """``PUT users/{user}/mfa`` with ``{"required": bool}``."""

    def put(self, name: str) -> None:
        user = self.directory_user(name)
        user.mfa_required = bool(self.json_body().get("required", True))
        self.send_json(200, user_view(user))


class UserGroupsControl(EntraControl):
    """``PUT users/{user}/groups`` with ``{"groups": [group ids]}``."""

    def put(self, name: str) -> None:
        user = self.directory_user(name)
        user.groups = self.known_groups(list(self.json_body().get("groups", [])))
        self.send_json(200, user_view(user))


class UsersControl(EntraControl):
    """``POST users``: add a user (``username``; optional ``display_name``, ``password``, ``groups``).

    The tenant is the username's domain; an unknown domain becomes a new tenant.
    """

    def post(self) -> None:
        spec = self.json_body()
        username = str(spec.get("username", ""))
        if "@" not in username or self.state.config.user(username) is not None:
            raise ServiceError(400, "InvalidUser", "Give a new username of the form name@domain.")
        tenant = self._tenant(username.rpartition("@")[2])
        user = User(
            username=username, display_name=spec.get("display_name", username.partition("@")[0]),
            tenant_id=tenant.id, oid=stable_id("user", tenant.id, username), password=spec.get("password", "password"),
            groups=self.known_groups(list(spec.get("groups", []))), mail=username,
        )
        self.state.config.users.append(user)
        self.send_json(201, user_view(user))

    def _tenant(self, domain: str) -> Tenant:
        """The tenant of ``domain``, created if new."""
        tenant = self.state.config.tenant(domain)
        if tenant is None:
            tenant = Tenant(id=stable_id("tenant", domain), domain=domain, display_name=domain)
            self.state.config.tenants.append(tenant)
        return tenant


class GroupsControl(EntraControl):
    """``POST groups`` with ``{"display_name", "security_enabled"?}``: add a group."""

    def post(self) -> None:
        spec = self.json_body()
        name = str(spec.get("display_name", ""))
        if not name:
            raise ServiceError(400, "InvalidGroup", "A group needs a display_name.")
        group = Group(stable_id("group", name), name, bool(spec.get("security_enabled", True)))
        if self.state.config.group(group.id) is None:
            self.state.config.groups.append(group)
        self.send_json(201, {"id": group.id, "display_name": name, "security_enabled": group.security_enabled})


class RefreshTokensControl(EntraControl):
    """``GET refresh-tokens[?user=]``: the stored records (digests, never tokens)."""

    def get(self) -> None:
        name = self.get_query_argument("user", None)
        oid = self.directory_user(name).oid if name else None
        records = RefreshTokens(self.state).records
        view = [{"sha256": k, **r} for k, r in records.items() if oid is None or r["oid"] == oid]
        self.send_json(200, {"refresh_tokens": view})


_CONTROL_PATHS = (
    ("users", UsersControl),
    ("users/([^/]+)/revoke", RevokeSessions),
    ("users/([^/]+)/consent/([^/]+)", ConsentControl),
    ("users/([^/]+)/mfa", MfaControl),
    ("users/([^/]+)/groups", UserGroupsControl),
    ("groups", GroupsControl),
    ("refresh-tokens", RefreshTokensControl),
)


def control_routes(state: EmulatorState) -> list:
    """``/_emulator/entra/...`` on the control port (see :class:`~.client.EmulatorControl` ``entra_*``)."""
    return [(f"/_emulator/entra/{path}", handler, {"state": state}) for path, handler in _CONTROL_PATHS]
