"""Typed compute errors, each with the message a user sees on the spawn page (never a stack trace)."""

from __future__ import annotations


class ComputeError(Exception):
    """A compute operation failed; ``str(error)`` is written for the user.

    JupyterHub shows an exception's ``jupyterhub_message`` on the spawn page and
    in API errors instead of a generic 500 text.
    """

    retryable = False

    @property
    def jupyterhub_message(self) -> str:
        return str(self)


class SignInExpired(ComputeError):
    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "Your Microsoft Entra ID sign-in has expired or was revoked. Log out, sign in again, then start your server."
        )


class PermissionDenied(ComputeError):
    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Azure refused: you do not have permission for this in the workspace. Ask your administrator for a role "
            f"that can manage compute instances. (Azure said: {detail})"
        )


class QuotaExceeded(ComputeError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"The workspace has no quota left for this machine size; choose a smaller one or ask your administrator. (Azure said: {detail})")


class Throttled(ComputeError):
    retryable = True

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"Azure is throttling requests right now; please try again in a minute. {detail}".strip())


class AzureUnavailable(ComputeError):
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"Azure Machine Learning did not answer in time or failed ({detail}); please try again shortly.")


class TimedOut(AzureUnavailable):
    """No answer within the timeout: a write may still have been carried out (the spawner cleans up after it)."""

    def __init__(self, detail: str = "TimeoutError") -> None:
        super().__init__(detail)


class ComputeFailed(ComputeError):
    def __init__(self, name: str, state: str, detail: str) -> None:
        super().__init__(
            f"Your compute instance {name} is {state}: {detail.rstrip('.') or 'Azure gave no reason'}. "
            "Start again with 'recreate' ticked to replace it."
        )


class NameCollision(ComputeError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"A compute instance named {name} exists in this region but belongs to someone else; "
            "it will not be used. Ask your administrator."
        )


class BadRequest(ComputeError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"Azure rejected the request: {detail}")


class BadSettings(ComputeError):
    """The admin's configuration for this server is invalid (found before anything is created)."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"The {what} settings for this server are invalid ({detail}); ask your administrator.")
