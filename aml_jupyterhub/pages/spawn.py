"""``/hub/spawn[/<user>[/<server>]]``: JupyterHub's spawn page, without its dead ends.

JupyterHub 6.1's ``SpawnHandler`` is kept; this subclass changes three moments:

- A spawn that fails at once with an expected, explained error (a ``SpawnException``,
  such as every :class:`~aml_jupyterhub.user_errors.UserFacingError`) shows *that
  server's* options form again with the spawner's own sentence, and logs one line.
  (JupyterHub re-renders the *default* server's form, and logs a traceback.)
- Posting the form for a server that is already starting or running (a second tab, a
  re-sent form) leads to that server's progress page or to the server, not to
  "400 ... is pending spawn".
- The form is never cached, so the back button during a spawn asks the hub again, which
  sends the browser to the progress page (the form itself also reloads when a browser
  restores it from its back-forward cache).

The routes are added by :class:`~aml_jupyterhub.auth.AzureAdDelegatedAuthenticator`
(an authenticator's handlers are matched before JupyterHub's own).
"""

from __future__ import annotations

from typing import Any

from jupyterhub.handlers.pages import SpawnHandler
from jupyterhub.spawner import SpawnException
from jupyterhub.utils import format_exception
from tornado import web


class SpawnPage(SpawnHandler):
    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store")

    @web.authenticated
    async def post(self, user_name: str | None = None, server_name: str = "", display_name: str = "") -> Any:
        user = self.current_user
        if user_name in (None, user.name):
            spawner = user.spawners.get(server_name or "")
            if spawner is not None and spawner.ready:
                return self.redirect(self.get_next_url(user, default=user.server_url(server_name or "")), status=303)
            if spawner is not None and spawner.pending == "spawn":
                self.log.info("%s is already starting: sending the browser to its progress", spawner._log_name)
                return self.redirect(self._get_pending_url(user, server_name or ""), status=303)
        return await super().post(user_name, server_name, display_name)

    async def _wrap_spawn_single_user(self, user, server_name, display_name, spawner, pending_url, options=None):
        try:
            return await super()._wrap_spawn_single_user(user, server_name, display_name, spawner, pending_url, options)
        except SpawnException as e:
            form = await spawner.get_options_form()
            if not form:
                raise  # no form to show again: the error page shows the message
            message, html_message = format_exception(e)
            self.set_status(e.status_code)
            page = await self._render_form(
                for_user=user, spawner_options_form=form, message=message, html_message=html_message
            )
            self.finish(page)


def spawn_page_handlers() -> list[tuple[str, type]]:
    """The routes of :class:`SpawnPage` (under the hub's prefix, like JupyterHub's own)."""
    return [(r"/spawn", SpawnPage), (r"/spawn/([^/]+)", SpawnPage), (r"/spawn/([^/]+)/([^/]+)", SpawnPage)]
