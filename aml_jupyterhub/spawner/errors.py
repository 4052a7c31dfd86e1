"""Typed compute errors, each with the message a user sees on the spawn page (never a stack trace)."""

from __future__ import annotations

from ..user_errors import UserFacingError


class ComputeError(UserFacingError):
    """A compute operation failed; ``str(error)`` is written for the user (see :class:`UserFacingError`)."""

    retryable = False


class SignInExpired(ComputeError):
    status, label = 401, "sign-in"

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "Your Microsoft Entra ID sign-in has expired or was revoked. Log out, sign in again, then start your server."
        )


class PermissionDenied(ComputeError):
    status, label = 403, "permission"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Azure refused: you do not have permission for this in the workspace. Ask your administrator for a role "
            f"that can manage compute instances. (Azure said: {detail})"
        )


class QuotaExceeded(ComputeError):
    status, label = 403, "quota"

    def __init__(self, detail: str) -> None:
        super().__init__(f"The workspace has no quota left for this machine size; choose a smaller one or ask your administrator. (Azure said: {detail})")


class Throttled(ComputeError):
    status, label = 429, "throttled"
    retryable = True

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"Azure is throttling requests right now; please try again in a minute. {detail}".strip())


class AzureUnavailable(ComputeError):
    status, label = 503, "azure-unavailable"
    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(f"Azure Machine Learning did not answer in time or failed ({detail}); please try again shortly.")


class EntraUnavailable(ComputeError):
    """No token for Azure: Microsoft Entra ID, not Azure Machine Learning, failed."""

    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Microsoft Entra ID did not issue a token for Azure in time or failed ({detail}); please try again shortly."
        )


class TimedOut(AzureUnavailable):
    """No answer within the timeout: a write may still have been carried out (the spawner cleans up after it)."""

    def __init__(self, detail: str = "TimeoutError") -> None:
        super().__init__(detail)


class ComputeFailed(ComputeError):
    status, label = 502, "instance-failed"

    def __init__(self, name: str, state: str, detail: str) -> None:
        super().__init__(
            f"Your compute instance {name} is {state}: {detail.rstrip('.') or 'Azure gave no reason'}. "
            "Start again with 'recreate' ticked to replace it."
        )


class NameCollision(ComputeError):
    status, label = 409, "name-collision"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A compute instance named {name} exists in this region but belongs to someone else; "
            "it will not be used. Ask your administrator."
        )


class BadRequest(ComputeError):
    status, label = 400, "azure-rejected"

    def __init__(self, detail: str) -> None:
        super().__init__(f"Azure rejected the request: {detail}")


class BadSettings(ComputeError):
    """The admin's configuration for this server is invalid (found before anything is created)."""

    status, label = 500, "bad-settings"

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(f"The {what} settings for this server are invalid ({detail}); ask your administrator.")


class InstanceReplaced(ComputeError):
    """The instance under this server's name is not the one this hub created (deleted and re-created outside it)."""

    status, label = 409, "replaced"

    def __init__(self, name: str, why: str) -> None:
        super().__init__(
            f"Your compute instance {name} is not the one this hub created ({why}), so it will not be used. "
            "Start again with 'recreate' ticked to replace it with a new one."
        )
