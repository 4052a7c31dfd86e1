"""Entra ID (Microsoft identity platform v2) on the ``authority`` port.

The first path segment is the tenant: its id, a verified domain, or
``organizations``/``common``.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``GET /{tenant}/discovery/v2.0/keys``
- ``GET /{tenant}/oauth2/v2.0/authorize``: the sign-in page (``templates/login.html``);
  posting its form redirects back with a single-use code (10 min)
- ``POST /{tenant}/oauth2/v2.0/token``: ``authorization_code`` (PKCE S256/plain),
  ``refresh_token`` (one resource per request, rotation), ``client_credentials``
  and ``password`` (ROPC)
- ``GET /{tenant}/oauth2/v2.0/logout`` and ``GET /common/discovery/instance``
  (MSAL's authority validation, when given this URL)

Errors use Entra's body (``error``, ``error_description`` with trace lines,
``error_codes``, ids, ``error_uri``, ``suberror``), 400 or 401 for
``invalid_client``; authorize errors go back to a trusted ``redirect_uri`` as
``error``/``error_description`` query parameters, otherwise to an error page.

State: refresh tokens are kept only as SHA-256 digests in
``state.section("entra_refresh_tokens")`` (user, client, scope, expiry,
used/revoked), consent per user and app in ``entra_consent``; both survive a
restart with a data dir. Authorization codes live in memory.

Deviations from Entra ID, each deliberate:

- ``strict_refresh_rotation`` (default on) refuses a refresh token once it was
  redeemed (AADSTS70000); Entra tolerates replays until expiry. It catches
  clients that keep stale refresh tokens.
- Signing in on the page satisfies MFA and grants consent to every requested
  resource (no second factor or consent prompt is shown); there is no browser
  session, so ``prompt=none`` always answers ``login_required``.
- Apps are single-tenant: ``common``/``organizations`` serve discovery but
  sign-in there is AADSTS50194, as for apps created after October 2018.
- Only ``response_type=code``; no device code, OBO, certificates or
  ``private_key_jwt``; the access token's ``scp`` lists resource permissions only.

The parts: ``errors`` (AADSTS catalogue, error body, handler base),
``directory`` (tenant, app, user, redirect URI), ``model`` (codes, refresh
tokens, consent), ``authorize`` (discovery, sign-in, logout), ``token`` (the
grants), ``control`` (the control API).
"""

from __future__ import annotations

from ..core.state import EmulatorState
from .authorize import Authorize, InstanceDiscovery, Keys, Logout, OpenIdConfiguration
from .token import TokenEndpoint

__all__ = ["routes"]

_TENANT = r"/([^/]+)"


def routes(state: EmulatorState) -> list:
    """The authority port's routes."""
    kw = {"state": state}
    return [
        (r"/common/discovery/instance", InstanceDiscovery, kw),
        (_TENANT + r"/v2\.0/\.well-known/openid-configuration", OpenIdConfiguration, kw),
        (_TENANT + r"/discovery/v2\.0/keys", Keys, kw),
        (_TENANT + r"/oauth2/v2\.0/authorize", Authorize, kw),
        (_TENANT + r"/oauth2/v2\.0/token", TokenEndpoint, kw),
        (_TENANT + r"/oauth2/v2\.0/logout", Logout, kw),
    ]
