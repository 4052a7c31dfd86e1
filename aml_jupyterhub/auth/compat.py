"""Work-arounds for the JupyterHub versions we support, each with the reason.

JupyterHub 6.1.1: when ``refresh_user`` returns False on a *cookie*-authenticated
request, ``BaseHandler.refresh_auth`` reads ``self._token_authenticated``, which
only token-authenticated requests ever set, and the request fails with a 500
(AttributeError) instead of asking the user to log in again. A class-level
default restores the intended behaviour; it changes nothing where the
attribute is set.
"""

from jupyterhub.handlers.base import BaseHandler


def apply() -> None:
    if not hasattr(BaseHandler, "_token_authenticated"):
        BaseHandler._token_authenticated = False
