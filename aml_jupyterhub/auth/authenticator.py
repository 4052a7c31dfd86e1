"""Entra ID sign-in that keeps the user's delegated tokens fresh and usable.

``AzureAdDelegatedAuthenticator`` is oauthenticator's ``AzureAdOAuthenticator``
with what acting *as the user* needs: v2 endpoints on any authority host,
PKCE, a validated id_token, a real refresh-token refresh, per-resource tokens
(:class:`~aml_jupyterhub.auth.broker.DelegatedTokens`), Entra groups mapped to
JupyterHub groups (with Graph for the overage case) and the token broker API.
"""

from __future__ import annotations

import time
from typing import Any

from jupyterhub.crypto import CryptKeeper
from jupyterhub.utils import maybe_future
from oauthenticator.azuread import AzureAdOAuthenticator
from tornado import web
from traitlets import Bool, Dict, Float, List, Unicode, default, observe

from . import compat
from .broker import DelegatedTokens, NeedsLogin, TokenUnavailable, next_generation
from .entra_client import EntraError, EntraTokenClient, EntraUnavailable
from .groups import GraphGroups
from .id_token import IdTokenError, OpenIdConfiguration, validate_id_token
from .not_allowed import CallbackHandler, LoginHandler, NotAllowed, NotAllowedHandler
from .provenance import mark_token
from .resources import DEFAULT_RESOURCES

OIDC_SCOPES = ["openid", "profile", "offline_access"]
compat.apply()


class AzureAdDelegatedAuthenticator(AzureAdOAuthenticator):
    """Sign in with Entra ID and keep the user's delegated tokens for the hub to act as them."""

    login_service = Unicode("Microsoft Entra ID", config=True, help="Name shown on the login button.")
    login_handler = LoginHandler
    callback_handler = CallbackHandler

    authority_host = Unicode(
        "https://login.microsoftonline.com",
        config=True,
        help="""Entra ID authority host, without tenant.

        Change it for sovereign clouds (e.g. https://login.microsoftonline.us)
        or the local emulator.""",
    )

    sign_in_resource = Unicode(
        "arm",
        config=True,
        help="""The resource (a key of `resources`) whose scope is asked at sign-in,
        besides `openid profile offline_access`. Its token is the one
        `auth_state["access_token"]` holds.""",
    )

    resources = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Resources the hub may mint delegated tokens for, by name.

        Each value is the space-separated scopes of ONE resource. Merged over
        the defaults (arm, storage, fabric, databricks, graph, postgres); map a
        default name to an empty string to remove it. Example::

            c.AzureAdDelegatedAuthenticator.resources = {
                "fabric": "https://api.fabric.microsoft.com/Lakehouse.Execute.All https://api.fabric.microsoft.com/Code.AccessFabric.All",
                "myapi": "api://1234-5678/access_as_user",
            }
        """,
    )

    broker_resources = List(
        Unicode(),
        default_value=["storage", "fabric", "databricks", "graph", "postgres"],
        config=True,
        help="""Resources the token broker hands to the user's own code.

        ARM is left out by default: notebooks rarely need it and it is the most
        powerful token a user has.""",
    )

    refresh_margin_minutes = Float(
        5,
        config=True,
        help="Refresh a delegated token this many minutes before it expires.",
    )

    ca_certs = Unicode(
        "",
        config=True,
        help="CA bundle for Entra ID and Graph (the local emulator's CA); empty: the system's.",
    )

    graph_api_url = Unicode(
        "https://graph.microsoft.com",
        config=True,
        help="Microsoft Graph base URL, used to resolve group membership when a token has too many groups.",
    )

    group_names = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        config=True,
        help="""Entra group object id -> JupyterHub group name.

        Only mapped groups become JupyterHub groups; `allowed_groups` and
        `admin_groups` use these names. Example::

            c.AzureAdDelegatedAuthenticator.group_names = {
                "1b5d...": "data-scientists",
                "9f3a...": "jupyterhub-admins",
            }
        """,
    )

    allowed_tenants = List(
        Unicode(),
        config=True,
        help="Tenant ids whose users may sign in; empty: only `tenant_id` (when it is a GUID) is checked by issuer.",
    )

    require_crypt_key = Bool(
        True,
        config=True,
        help="Refuse to start without JUPYTERHUB_CRYPT_KEY (auth_state holds the user's refresh token).",
    )

    @default("enable_auth_state")
    def _enable_auth_state_default(self) -> bool:
        return True

    @default("manage_groups")
    def _manage_groups_default(self) -> bool:
        return True

    @default("username_claim")
    def _username_claim_default(self) -> str:
        return "preferred_username"

    @default("enable_pkce")
    def _enable_pkce_default(self) -> bool:
        return True

    @default("authorize_url")
    def _authorize_url_default(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/authorize"

    @default("token_url")
    def _token_url_default(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}/oauth2/v2.0/token"

    @default("scope")
    def _scope_default(self) -> list[str]:
        return [*OIDC_SCOPES, *self.all_resources[self.sign_in_resource].split()]

    @default("http_request_kwargs")
    def _http_request_kwargs_default(self) -> dict[str, Any]:
        return {"ca_certs": self.ca_certs} if self.ca_certs else {}

    @default("reconcile_auth_state_hook")
    def _reconcile_default(self):
        return keep_newest_tokens

    @observe("resources", "client_id", "client_secret", "token_url", "refresh_margin_minutes", "ca_certs")
    def _reset_clients(self, change: Any) -> None:
        self.__dict__.pop("_tokens", None)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not self.enable_auth_state:
            raise ValueError(
                "AzureAdDelegatedAuthenticator keeps the user's refresh token in auth_state: "
                "set c.Authenticator.enable_auth_state = True."
            )
        if self.require_crypt_key and not CryptKeeper.instance().keys:
            raise ValueError(
                "JUPYTERHUB_CRYPT_KEY is not set: auth_state (the users' refresh tokens) must be encrypted. "
                "Generate one with `openssl rand -hex 32` and set it in the hub's environment."
            )
        self._oidc = OpenIdConfiguration(
            f"{self.authority_host}/{self.tenant_id}/v2.0/.well-known/openid-configuration", self.ca_certs or None
        )
        self._groups = GraphGroups(self.graph_api_url, self.ca_certs or None)

    # -- configuration views ---------------------------------------------------
    @property
    def all_resources(self) -> dict[str, str]:
        merged = {**DEFAULT_RESOURCES, **self.resources}
        return {name: scope for name, scope in merged.items() if scope}

    @property
    def tokens(self) -> DelegatedTokens:
        """The per-resource delegated token API: ``await authenticator.tokens.get(user, "fabric")``."""
        if "_tokens" not in self.__dict__:
            client = EntraTokenClient(self.token_url, self.client_id, self.client_secret, ca_certs=self.ca_certs or None)
            self.__dict__["_tokens"] = DelegatedTokens(client, self.all_resources, self.refresh_margin_minutes * 60)
        return self.__dict__["_tokens"]

    @property
    def sign_in_scope(self) -> str:
        return " ".join(self.scope)

    # -- sign-in ---------------------------------------------------------------
    async def get_token_info(self, handler: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Redeem the code with typed errors that never echo a token."""
        try:
            token_info = await self.tokens.client.redeem_code(
                params["code"], params["redirect_uri"], params.get("code_verifier"), self.sign_in_scope
            )
        except EntraError as e:
            raise web.HTTPError(403, f"Sign-in was refused by Microsoft Entra ID: {e}") from None
        except EntraUnavailable as e:
            raise web.HTTPError(503, f"Microsoft Entra ID is unavailable, try again shortly: {e}") from None
        token_info["expires_at"] = time.time() + int(token_info.get("expires_in", 3600))
        return token_info

    async def token_to_user(self, token_info: dict[str, Any]) -> dict[str, Any]:
        """The user is who the validated id_token says."""
        if not token_info.get("id_token"):
            raise web.HTTPError(500, "Entra ID returned no id_token: is `openid` in the scopes?")
        tenants = set(self.allowed_tenants) or None
        try:
            return await validate_id_token(token_info["id_token"], self._oidc, self.client_id, allowed_tenants=tenants)
        except IdTokenError as e:
            raise web.HTTPError(403, f"Sign-in rejected: {e}") from None

    def user_info_to_username(self, user_info: dict[str, Any]) -> str:
        for claim in (self.username_claim, "preferred_username", "upn", "email"):
            value = user_info.get(claim) if isinstance(claim, str) else claim(user_info)
            if value:
                return str(value).strip().lower()
        raise web.HTTPError(403, "Entra ID sent no username claim (preferred_username/upn) for this account.")

    def build_auth_state_dict(self, token_info: dict[str, Any], user_info: dict[str, Any]) -> dict[str, Any]:
        """Tokens once (no duplicate token_response that could go stale), plus expiry and generation."""
        scope = token_info.get("scope", "")
        return {
            "access_token": token_info["access_token"],
            "refresh_token": token_info.get("refresh_token"),
            "id_token": token_info.get("id_token"),
            "scope": scope.split() if isinstance(scope, str) else scope,
            "expires_at": token_info["expires_at"],
            "signed_in_at": time.time(),
            "token_generation": 1,
            self.user_auth_state_key: user_info,
        }

    async def get_user_groups(self, auth_state: dict[str, Any]) -> set[str]:
        """Mapped names of the user's Entra groups (resolved through Graph on overage)."""
        claims = auth_state.get(self.user_auth_state_key, {})
        if "groups" in claims:
            group_ids = set(claims["groups"])
        elif "groups" in claims.get("_claim_names", {}):
            group_ids = await self._groups.member_groups(await self._graph_token(auth_state))
        else:
            group_ids = set()
        return {self.group_names[g] for g in group_ids if g in self.group_names}

    async def _graph_token(self, auth_state: dict[str, Any]) -> str:
        """A Graph token minted at sign-in from the fresh refresh token (rotation kept in auth_state)."""
        response = await self.tokens.client.refresh(auth_state["refresh_token"], self.all_resources["graph"])
        if response.refresh_token:
            auth_state["refresh_token"] = response.refresh_token
            auth_state["token_generation"] = next_generation(auth_state)
        return response.access_token

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        if await super().check_allowed(username, auth_model):
            return True
        raise NotAllowed(username)  # the callback sends the browser to the /hub/not-allowed page

    # -- refresh ---------------------------------------------------------------
    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> bool | dict[str, Any]:
        """Renew the sign-in token shortly before it expires; False sends the user to sign in again."""
        try:
            auth_state = await self.tokens.refresh_sign_in(user, self.sign_in_scope)
        except NeedsLogin as e:
            self.log.info("Sign-in of %s can no longer be refreshed (%s); they must sign in again", user.name, e)
            return False
        except (TokenUnavailable, EntraUnavailable) as e:
            self.log.warning("Could not refresh the sign-in of %s: %s", user.name, e)
            return True
        if auth_state is None:
            return True
        model: dict[str, Any] = {"name": user.name, "auth_state": auth_state}
        if self.manage_groups:
            model["groups"] = sorted(await self.get_user_groups(auth_state))
        return model

    # -- handlers ----------------------------------------------------------------
    def get_handlers(self, app: Any) -> list:
        """The broker, the instance API, the spawn pages, the 403 page, and JupyterHub's
        token-creation endpoint that marks self-made tokens.

        The authenticator's handlers come before JupyterHub's own, so this
        ``/api/users/<name>/tokens`` (a subclass of JupyterHub's) and the spawn
        pages replace JupyterHub's.
        """
        from ..pages import spawn_page_handlers
        from .handlers import OwnTokensHandler, TokenBrokerHandler
        from .instance_handlers import instance_handlers

        return [
            *super().get_handlers(app),
            (r"/api/aml/tokens/([^/]+)", TokenBrokerHandler),
            (r"/api/users/([^/]+)/tokens", OwnTokensHandler),
            *instance_handlers(),
            *spawn_page_handlers(),
            (r"/not-allowed", NotAllowedHandler),
        ]

    async def pre_spawn_start(self, user: Any, spawner: Any) -> None:
        """Mark the server's token as held by its user: the broker serves the user's code in their server."""
        await maybe_future(super().pre_spawn_start(user, spawner))
        if not mark_token(user.db, spawner.api_token, user.settings):
            self.log.warning("The token of %s's server %r was not found: the broker will refuse it", user.name, spawner.name)


def keep_newest_tokens(authenticator: Any, auth_model: dict[str, Any], existing: dict[str, Any] | None) -> dict[str, Any]:
    """``reconcile_auth_state_hook``: never let an older refresh token overwrite a newer one.

    A sign-in refresh and a broker mint can finish in either order. Each
    auth_state carries its lineage: when the user signed in and how many times
    the refresh token rotated since; the newer lineage wins, so a fresh
    interactive sign-in always replaces what was stored.
    """
    new = auth_model.get("auth_state")
    if not existing or not new:
        return new
    return existing if _lineage(existing) > _lineage(new) else new


def _lineage(auth_state: dict[str, Any]) -> tuple[float, int]:
    return (float(auth_state.get("signed_in_at", 0)), int(auth_state.get("token_generation", 0)))
