"""The Azure ML gateway in front of an emulated compute instance's Jupyter.

In Azure, ``https://<ci>.<region>.instances.azureml.ms`` lets a browser
through only after Entra ID sign-in as the instance's **assigned user**. The
emulator plays that part inside the instance's own Jupyter server, as its
``IdentityProvider``: an unauthenticated page request is sent to ``/login``,
which signs the browser in at the emulated Entra ID (authorization code +
PKCE, as the public client ``GATEWAY_CLIENT_ID``; a browser already signed in
there passes without a form) and lets it in only if the id_token's ``oid`` is
the assigned user's and that user's role on the workspace grants
``Microsoft.MachineLearningServices/workspaces/computes/applicationaccess/action``
(asked of the emulated ARM). Anyone else gets 403. API requests without the
gateway's cookie get 403 from Jupyter itself.

The id_token is taken from the token endpoint's own TLS answer (OIDC core
3.1.3.7 allows this instead of a signature check for the code flow).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import urlencode

import jwt
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Type, Unicode, default

FLOW_COOKIE = "aml-gateway-signin"


def flow_cookie(state: str) -> str:
    """One cookie per sign-in under way: two tabs opening the instance at once do not undo each other's."""
    return f"{FLOW_COOKIE}-{state}"


APPLICATION_ACCESS = "Microsoft.MachineLearningServices/workspaces/computes/applicationaccess/action"


class GatewayLoginHandler(JupyterHandler):
    """``/login``: off to Entra ID, and back with a code for the assigned user only."""

    @property
    def gateway(self) -> GatewayIdentityProvider:
        return self.identity_provider  # type: ignore[return-value]

    def redirect_uri(self) -> str:
        return f"{self.request.protocol}://{self.request.host}{self.base_url}login"

    async def get(self) -> None:
        if self.get_argument("code", None) is None and self.get_argument("error", None) is None:
            self.start_sign_in()
            return
        state = self.get_argument("state", "")
        cookie = flow_cookie(state)
        flow = json.loads(self.get_secure_cookie(cookie) or b"{}")
        self.clear_cookie(cookie, path=self.base_url)
        if not flow or not secrets.compare_digest(flow["state"], state):
            raise web.HTTPError(400, "The sign-in could not be verified; open the instance again.")
        if self.get_argument("error", None):
            raise web.HTTPError(403, f"Sign-in failed: {self.get_argument('error_description', self.get_argument('error'))}")
        claims = await self.redeem(self.get_argument("code"), flow["verifier"])
        if str(claims.get("oid", "")).lower() != self.gateway.assigned_oid.lower():
            self.log.warning("Gateway: %s is not the assigned user of this instance", claims.get("preferred_username"))
            raise web.HTTPError(403, "This compute instance is assigned to another user.")
        if not await self.may_open(claims["oid"]):
            self.log.warning("Gateway: %s lacks %s", claims.get("preferred_username"), APPLICATION_ACCESS)
            raise web.HTTPError(
                403, f"You do not have authorization to perform action '{APPLICATION_ACCESS}' on this compute instance."
            )
        user = User(username=claims.get("preferred_username", claims["oid"]), name=claims.get("name", ""))
        self.gateway.set_login_cookie(self, user)
        self.redirect(flow["next"])

    def start_sign_in(self) -> None:
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        target = self.get_argument("next", self.base_url)
        if not target.startswith("/") or target.startswith("//"):
            target = self.base_url  # only ever back into this instance
        self.set_secure_cookie(
            flow_cookie(state), json.dumps({"state": state, "verifier": verifier, "next": target}),
            expires_days=None, httponly=True, secure=True, path=self.base_url,
        )  # fmt: skip
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        params = {
            "client_id": self.gateway.client_id, "response_type": "code", "redirect_uri": self.redirect_uri(),
            "scope": "openid profile", "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
        }  # fmt: skip
        self.redirect(f"{self.gateway.authority}/oauth2/v2.0/authorize?{urlencode(params)}")

    async def may_open(self, oid: str) -> bool:
        """Whether the user's role on the workspace grants application access (the emulated ARM decides)."""
        if not self.gateway.access_url:
            return True
        request = HTTPRequest(
            f"{self.gateway.access_url}&{urlencode({'principal': oid})}", ca_certs=self.gateway.ca_bundle or None,
            request_timeout=30,
        )  # fmt: skip
        try:
            return bool(json.loads((await AsyncHTTPClient().fetch(request)).body)["allowed"])
        except HTTPClientError as e:
            raise web.HTTPError(503, f"The gateway could not check access ({e.code}).") from None

    async def redeem(self, code: str, verifier: str) -> dict:
        body = urlencode(
            {"grant_type": "authorization_code", "client_id": self.gateway.client_id, "code": code,
             "redirect_uri": self.redirect_uri(), "code_verifier": verifier, "scope": "openid profile"}
        )  # fmt: skip
        request = HTTPRequest(
            f"{self.gateway.authority}/oauth2/v2.0/token", method="POST", body=body, ca_certs=self.gateway.ca_bundle or None,
            request_timeout=30,
        )  # fmt: skip
        try:
            answer = json.loads((await AsyncHTTPClient().fetch(request)).body)
        except HTTPClientError as e:
            raise web.HTTPError(403, f"Entra ID refused the sign-in ({e.code}).") from None
        return jwt.decode(answer["id_token"], options={"verify_signature": False})


class GatewayIdentityProvider(IdentityProvider):
    """Only the instance's assigned user, signed in with Entra ID, may use this Jupyter."""

    authority = Unicode(config=True, help="The emulated Entra ID authority: https://<host:port>/<tenant>.")
    client_id = Unicode(config=True, help="The gateway's public client id.")
    assigned_oid = Unicode(config=True, help="Object id of the instance's assigned user.")
    ca_bundle = Unicode("", config=True, help="CA bundle for the authority.")
    access_url = Unicode(
        "", config=True, help="Where the emulated ARM answers whether a principal may open this instance ('' = no check)."
    )
    login_handler_class = Type(default_value=GatewayLoginHandler, klass=web.RequestHandler, config=True)

    @default("token")
    def _token_default(self) -> str:
        return ""  # no Jupyter token: the gateway's sign-in is the only way in

    @property
    def login_available(self) -> bool:
        return True

    @property
    def auth_enabled(self) -> bool:
        return True
