"""The token broker: the user's own code asks the hub for a fresh delegated token.

``GET /hub/api/aml/tokens/<resource>`` with ``Authorization: token <hub API token>``
answers ``{"access_token", "expires_on", "resource"}`` for the token's owner.
It needs the custom scope ``custom:aml-jupyterhub:tokens`` for that user and a
token that user holds for themself (:mod:`.provenance`: not one an admin made
for them), never accepts browser cookies, never returns a refresh token, and
never puts a token in an error or a log line.
"""

from __future__ import annotations

import json

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.apihandlers.users import UserTokenListAPIHandler
from jupyterhub.user import User
from tornado import web

from .broker import NeedsLogin, TokenUnavailable
from .provenance import is_self_held, mark
from .resources import UnknownResource

BROKER_SCOPE = "custom:aml-jupyterhub:tokens"


NOT_SELF_HELD = (
    "The token broker serves only tokens you hold for yourself (made on your token page, your server's or "
    "your compute instance's); this token was made for you by someone else."
)


class BrokerAPIHandler(APIHandler):
    """Base of the broker's endpoints: hub API tokens with the broker scope, held by their own user."""

    def broker_user(self):
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "Missing or invalid hub API token.")
        if not getattr(self, "_token_authenticated", False):
            raise web.HTTPError(403, "The token broker accepts hub API tokens only, not browser cookies.")
        allowed = BROKER_SCOPE in self.expanded_scopes or f"{BROKER_SCOPE}!user={user.name}" in self.expanded_scopes
        if user.kind != "user" or not allowed:
            raise web.HTTPError(403, f"This token lacks the {BROKER_SCOPE} scope for its user.")
        token = self.get_token()
        if not is_self_held(token, self.settings):
            token_id = token.api_id if token is not None else "?"
            self.log.warning("Token broker refused token %s of %s: not one they hold for themself", token_id, user.name)
            raise web.HTTPError(403, NOT_SELF_HELD)
        return user

    def send_secret_json(self, body: dict) -> None:
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


class TokenBrokerHandler(BrokerAPIHandler):
    async def get(self, resource: str) -> None:
        user = self.broker_user()
        authenticator = self.authenticator
        if resource not in authenticator.broker_resources:
            raise web.HTTPError(403, f"Resource {resource!r} is not available from the token broker.")
        try:
            token = await authenticator.tokens.get(user, resource)
        except UnknownResource as e:
            raise web.HTTPError(403, str(e)) from None
        except NeedsLogin:
            raise web.HTTPError(401, "Your Entra ID sign-in has expired or was revoked: log in to the hub again.") from None
        except TokenUnavailable as e:
            raise web.HTTPError(502, f"Microsoft Entra ID did not issue a token: {e}") from None
        self.send_secret_json({"access_token": token.token, "expires_on": token.expires_on, "resource": resource})


class OwnTokensHandler(UserTokenListAPIHandler):
    """JupyterHub's ``/api/users/<name>/tokens``, marking the tokens a user makes for themself.

    A token is marked when its requester is its owner, signed in with their own
    browser session or with a token of theirs that is itself marked; a token an
    admin (or a token an admin made) creates for someone else is not.
    """

    _mark_for: int | None = None

    async def post(self, user_name: str) -> None:
        requester, owner = self.current_user, self.find_user(user_name)
        if isinstance(requester, User) and owner is not None and requester.id == owner.id:
            if not self._token_authenticated or is_self_held(self.get_token(), self.settings):
                self._mark_for = owner.id
        await super().post(user_name)

    def token_model(self, token):
        if self.request.method == "POST" and self._mark_for is not None and token.user_id == self._mark_for:
            mark(token, self.settings)
            self.db.commit()
        return super().token_model(token)


def configure_token_broker(c) -> None:
    """Grant every user (and their servers) the broker scope for themselves only.

    Call from ``jupyterhub_config.py``: ``configure_token_broker(c)``.
    """
    c.JupyterHub.custom_scopes = {
        **dict(c.JupyterHub.get("custom_scopes", {})),
        BROKER_SCOPE: {"description": "Get fresh Entra ID tokens for your own resources (aml-jupyterhub)."},
    }
    c.JupyterHub.load_roles = [
        *list(c.JupyterHub.get("load_roles", [])),
        {"name": "user", "scopes": ["self", f"{BROKER_SCOPE}!user"]},
    ]
    c.Spawner.server_token_scopes = ["access:servers!server", "users:activity!user", f"{BROKER_SCOPE}!user"]
