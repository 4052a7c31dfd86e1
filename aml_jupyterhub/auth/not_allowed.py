"""Signed in at Entra ID, but not allowed here: a page that explains it and offers a way out.

The OAuth callback does not render the refusal itself (reloading it would re-run the
callback, whose one-time state cookie is gone: "400 : OAuth state missing from cookies").
It redirects to ``/hub/not-allowed``, which any reload shows again. That page names the
allowed groups and offers "Sign in with another account" (``/hub/oauth_login?prompt=select_account``:
Entra ID then asks which account to use instead of signing the same one in again) and "Log out".
"""

from __future__ import annotations

from html import escape

from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler
from tornado import web

COOKIE = "aml-not-allowed"
COOKIE_DAYS = 1 / 24  # long enough to reload the page, not to linger


class NotAllowed(web.HTTPError):
    """A signed-in user outside the allowed groups (raised by ``check_allowed``)."""

    def __init__(self, username: str) -> None:
        super().__init__(403, "%s is not in an allowed group", username, reason="Not allowed")
        self.username = username


class LoginHandler(OAuthLoginHandler):
    """``/hub/oauth_login``; ``?prompt=select_account`` is passed on to Entra ID (pick another account)."""

    def authorize_redirect(self, *args, extra_params=None, **kwargs):
        if self.get_argument("prompt", "") == "select_account":
            extra_params = {**(extra_params or {}), "prompt": "select_account"}
        return super().authorize_redirect(*args, extra_params=extra_params, **kwargs)


class CallbackHandler(OAuthCallbackHandler):
    """``/hub/oauth_callback``: a refusal for the groups goes to the reloadable ``/hub/not-allowed`` page."""

    async def get(self):
        try:
            return await super().get()
        except NotAllowed as e:
            self.log.info("%s signed in but is not in an allowed group", e.username)
            self.set_secure_cookie(COOKIE, e.username, expires_days=COOKIE_DAYS, path=self.hub.base_url, httponly=True)
            self.redirect(url_path_join(self.hub.base_url, "not-allowed"))


class NotAllowedHandler(BaseHandler):
    """``/hub/not-allowed``: who is signed in, which groups may enter, and the ways out."""

    async def get(self):
        raw = self.get_secure_cookie(COOKIE, max_age_days=COOKIE_DAYS)
        who = escape(raw.decode(errors="replace")) if raw else "The account you signed in with"
        groups = ", ".join(f"<strong>{escape(g)}</strong>" for g in sorted(self.authenticator.allowed_groups)) or "(none configured)"
        base = self.hub.base_url
        message = (
            f"{who} is signed in at {escape(self.authenticator.login_service)} but is not allowed to use this hub. "
            f"Ask your administrator to add you to one of these groups: {groups}.</p><p>"
            f'<a class="btn btn-jupyter" href="{url_path_join(base, "oauth_login")}?prompt=select_account">Sign in with another account</a> '
            f'<a class="btn btn-light" href="{url_path_join(base, "logout")}">Log out</a>'
        )
        self.set_status(403)
        self.set_header("Cache-Control", "no-store")
        html = await self.render_template("error.html", status_code=403, status_message="Not allowed", message_html=message)
        self.finish(html)
