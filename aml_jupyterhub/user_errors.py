"""The base of every failure a user can meet on the way to their server, with the sentence they see.

A :class:`UserFacingError` is JupyterHub's ``SpawnException``: the hub logs it
as one line (no traceback: it is expected, not a bug), counts it as a refused
spawn rather than a hub error, and shows ``message`` on the page the user is
looking at (the options form, the progress page, the API's answer).
"""

from __future__ import annotations

from jupyterhub.spawner import SpawnException


class UserFacingError(SpawnException):
    """``str(error)`` is the one-sentence message for the user; ``status`` the HTTP status it answers with."""

    status = 500
    label = "error"  # the metrics' failure reason (and the HTTP reason phrase: keep it short, ASCII)

    def __init__(self, message: str) -> None:
        # tornado formats log_message with %: keep a message's own % signs literal
        super().__init__(message, reason=self.label, log_message=message.replace("%", "%%"), status_code=self.status)

    def __str__(self) -> str:
        return self.message

    @property
    def jupyterhub_message(self) -> str:
        return self.message
