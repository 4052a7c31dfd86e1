"""Who may call ARM: bearer tokens (401) and roles on the workspace (403).

Roles are the built-in ones a hub meets, and the custom role Azure ML
documents for the user of an instance created for them, as action patterns
over ``Microsoft.MachineLearningServices/`` (``*`` matches anything, ``/``
included), with their NotActions. Role assignments come from the workspace's
``role_assignments`` (principal object id -> role name). The gateway in front
of an instance asks :func:`allowed` too (``.../applicationaccess/action``).
Sources: docs/emulator-fidelity.md.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from ..core.config import Workspace
from ..core.handlers import ServiceError
from ..core.keys import TokenError, unverified_claims
from ..core.state import EmulatorState
from ..core.tokens import Caller, require_bearer

PROVIDER = "Microsoft.MachineLearningServices"
ARM_AUDIENCES = "'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'"
ADMIN_ROLES = frozenset({"Owner", "Contributor"})
CUSTOM_INSTANCE_USER = "Compute Instance User (custom)"
#: What opening an instance's applications (Jupyter) through the Azure ML gateway needs.
APPLICATION_ACCESS = "workspaces/computes/applicationaccess/action"
# role -> (actions, notActions), relative to Microsoft.MachineLearningServices/
ROLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Owner": (("*",), ()),
    "Contributor": (("*",), ()),
    "AzureML Compute Operator": (("workspaces/read", "workspaces/computes/*"), ()),
    "AzureML Data Scientist": (
        ("workspaces/read", "workspaces/*/read", "workspaces/*/action", "workspaces/*/write", "workspaces/*/delete"),
        ("workspaces/computes/write", "workspaces/computes/delete", "workspaces/computes/*/write", "workspaces/computes/*/delete"),
    ),
    "Reader": (("*/read", "workspaces/read"), ()),
    # The custom role how-to-create-compute-instance.md describes for a user an instance was created for.
    CUSTOM_INSTANCE_USER: (
        (
            "workspaces/read",
            "workspaces/computes/read",
            "workspaces/computes/start/action",
            "workspaces/computes/stop/action",
            "workspaces/computes/restart/action",
            "workspaces/computes/applicationaccess/action",
            "workspaces/computes/updateSchedules/action",
        ),
        (),
    ),
}


def authenticate(state: EmulatorState, authorization: str | None) -> Caller:
    """The caller of a request, or 401 the way ARM answers it (with a ``WWW-Authenticate`` challenge)."""
    try:
        return require_bearer(state, authorization, "arm")
    except TokenError as e:
        code, message = unauthenticated_reason(e, authorization or "")
        authority = state.urls.get("authority", "https://login.microsoftonline.com")
        challenge = (
            f'Bearer authorization_uri="{authority}/", error="invalid_token", '
            f'error_description="{message.replace(chr(34), chr(39))}"'
        )
        raise ServiceError(401, code, message, {"WWW-Authenticate": challenge}) from None


def unauthenticated_reason(error: TokenError, authorization: str) -> tuple[str, str]:
    """ARM's error code and message for a refused token."""
    if str(error) == "missing":
        return "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
    if error.expired:
        return "ExpiredAuthenticationToken", str(error)
    if "audience" in str(error):
        audience = unverified_claims(authorization[7:].strip()).get("aud")
        return (
            "InvalidAuthenticationTokenAudience",
            f"The access token has been obtained for wrong audience or resource '{audience}'. It should exactly match "
            f"with one of the allowed audiences {ARM_AUDIENCES}.",
        )
    return "InvalidAuthenticationToken", f"The access token is invalid. {error}"


def allowed(role: str | None, action: str) -> bool:
    """Whether ``role`` grants ``action`` (relative to Microsoft.MachineLearningServices/)."""
    actions, not_actions = ROLES.get(role or "", ((), ()))
    return any(fnmatchcase(action, p) for p in actions) and not any(fnmatchcase(action, p) for p in not_actions)


def authorize(workspace: Workspace, caller: Caller, action: str, scope: str) -> None:
    """403 AuthorizationFailed unless the caller's role on the workspace grants ``action`` over ``scope``."""
    if not allowed(workspace.role_assignments.get(caller.oid), action):
        deny(caller, action, scope)


def deny(caller: Caller, action: str, scope: str) -> None:
    """ARM's 403, word for word."""
    raise ServiceError(
        403,
        "AuthorizationFailed",
        f"The client '{caller.name}' with object id '{caller.oid}' does not have authorization to perform action "
        f"'{PROVIDER}/{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    )


def is_admin(workspace: Workspace, caller: Caller) -> bool:
    """Owner or Contributor on the workspace: may manage anyone's personal compute instance."""
    return workspace.role_assignments.get(caller.oid) in ADMIN_ROLES
