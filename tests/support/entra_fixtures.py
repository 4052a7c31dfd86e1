"""Fixtures for tests of the emulated Entra ID and Graph: real HTTPS requests, no back doors.

:class:`EntraClient` drives the demo app registration the way a browser and a
web app do: it opens the authorize URL, posts the sign-in form
(:func:`support.signin.submit_credentials`) and redeems the code at the token
endpoint, so tests see exactly what MSAL or oauthenticator would.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import jwt
import pytest
import requests

from aml_jupyterhub.emulator import EmulatorThread
from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config
from support.signin import submit_credentials

DIRECTORY = default_config()
TENANT = DIRECTORY.tenants[0]
ARM_SCOPE = "https://management.azure.com/user_impersonation"
STORAGE_SCOPE = "https://storage.azure.com/user_impersonation"
GRAPH_GROUPS_SCOPE = "https://graph.microsoft.com/User.Read https://graph.microsoft.com/GroupMember.Read.All"
SIGN_IN_SCOPE = f"openid profile offline_access {ARM_SCOPE}"
REDIRECT_URI = "http://localhost:8400/callback"


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified (tests that verify use PyJWT with the JWKS)."""
    return jwt.decode(token, options={"verify_signature": False})


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class SignIn:
    """What the authorize leg gave back: the redirect's query and the PKCE verifier used."""

    params: dict[str, str]
    verifier: str
    redirect_uri: str = REDIRECT_URI
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(12))

    @property
    def code(self) -> str:
        return self.params["code"]


class EntraClient:
    """The demo app talking to the emulated Entra ID over HTTPS (a ``requests`` session, env-proof)."""

    def __init__(self, authority: str, ca_bundle: str, tenant: str = TENANT.id) -> None:
        self.authority = authority
        self.tenant = tenant
        self.ca_bundle = ca_bundle
        self.session = entra_session(ca_bundle)

    @property
    def base(self) -> str:
        return f"{self.authority}/{self.tenant}"

    def authorize_url(self, scope: str = SIGN_IN_SCOPE, **params: str) -> str:
        query = {"client_id": DEMO_CLIENT_ID, "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": scope,
                 "state": secrets.token_urlsafe(8), **params}
        return f"{self.base}/oauth2/v2.0/authorize?{urlencode(query)}"

    def sign_in(self, username: str, password: str = "password", scope: str = SIGN_IN_SCOPE, **params: str) -> SignIn:
        """Open the sign-in page, post the form, and return the redirect's parameters (PKCE S256 by default)."""
        verifier, challenge = pkce_pair()
        nonce = secrets.token_urlsafe(12)
        query = {"code_challenge": challenge, "code_challenge_method": "S256", "nonce": nonce, **params}
        url = self.authorize_url(scope, **query)
        back = submit_credentials(requests.Session(), url, username, password, self.ca_bundle)
        assert back.status_code == 302, back.text[:500]
        return SignIn(redirect_params(back.headers["Location"]), verifier, nonce=nonce)

    def token(self, auth: tuple[str, str] | None = None, **form: str) -> requests.Response:
        """POST the token endpoint as the demo app (secret in the body, or by Basic ``auth``)."""
        body = dict(form) if auth else {"client_id": DEMO_CLIENT_ID, "client_secret": DEMO_CLIENT_SECRET, **form}
        return self.session.post(f"{self.base}/oauth2/v2.0/token", data=body, auth=auth, timeout=30)

    def redeem(self, sign_in: SignIn, **form: str) -> requests.Response:
        params = {"grant_type": "authorization_code", "code": sign_in.code, "redirect_uri": sign_in.redirect_uri,
                  "code_verifier": sign_in.verifier, **form}
        return self.token(**params)

    def refresh(self, refresh_token: str, scope: str | None = None) -> requests.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self.token(**form, **({"scope": scope} if scope else {}))

    def password(self, username: str, password: str = "password", scope: str = SIGN_IN_SCOPE) -> requests.Response:
        return self.token(grant_type="password", username=username, password=password, scope=scope)

    def tokens_for(self, username: str, scope: str = SIGN_IN_SCOPE) -> dict[str, Any]:
        """Sign in through the page and redeem the code: the token answer."""
        r = self.redeem(self.sign_in(username, scope=scope))
        assert r.status_code == 200, r.text
        return r.json()


def entra_session(ca_bundle: str) -> requests.Session:
    """A session that trusts the emulator's CA whatever REQUESTS_CA_BUNDLE says (what MSAL gets as http_client)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_bundle
    return session


def redirect_params(location: str) -> dict[str, str]:
    """The query parameters of a redirect back to the app."""
    return dict(parse_qsl(urlsplit(location).query))


class _HiddenFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a.get("name", "")] = a.get("value", "")


def form_post_response(html: str) -> tuple[str, dict[str, str]]:
    """What a ``response_mode=form_post`` page would post back: the target URL and its fields."""
    parser = _HiddenFields()
    parser.feed(html)
    return parser.action, parser.fields


@pytest.fixture
def entra(emulator: EmulatorThread, ca_bundle: str) -> EntraClient:
    """The demo app against the session emulator's Entra ID (demo tenant)."""
    return EntraClient(emulator.endpoints["authority"], ca_bundle)


@pytest.fixture
def new_user(control: EmulatorControl) -> Callable[..., dict[str, Any]]:
    """A factory of fresh directory users (unique names; ``domain=`` for another tenant).

    ``control`` restores the directory after the test; refresh tokens and
    consent of these users stay in the emulator's state, unused by others.
    """

    def make(**fields: Any) -> dict[str, Any]:
        domain = fields.pop("domain", TENANT.domain)
        return control.entra_add_user(f"u{uuid.uuid4().hex[:10]}@{domain}", **fields)

    return make
