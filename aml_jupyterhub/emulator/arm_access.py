"""Who may do what on ARM: bearer tokens (401), built-in roles (403) and throttling (429)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from .config import Workspace
from .handlers import ServiceError
from .keys import TokenError
from .state import EmulatorState
from .tokens import Caller, require_bearer

PROVIDER = "Microsoft.MachineLearningServices/workspaces"
ADMIN_ROLES = frozenset({"Owner", "Contributor"})
# role -> the kinds of action it grants on compute (read, write, delete, action)
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "Owner": frozenset({"read", "write", "delete", "action"}),
    "Contributor": frozenset({"read", "write", "delete", "action"}),
    "AzureML Compute Operator": frozenset({"read", "write", "delete", "action"}),
    "AzureML Data Scientist": frozenset({"read", "action"}),
    "Reader": frozenset({"read"}),
}


def authenticate(state: EmulatorState, authorization: str | None, authority: str) -> Caller:
    """The caller of a request, or 401 the way ARM answers it."""
    try:
        return require_bearer(state, authorization, "arm")
    except TokenError as e:
        if str(e) == "missing":
            code, message = "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        elif e.expired:
            code, message = "ExpiredAuthenticationToken", str(e)
        else:
            code, message = "InvalidAuthenticationToken", f"The access token is invalid. {e}"
        challenge = (
            f'Bearer authorization_uri="{authority}", error="invalid_token", '
            f'error_description="{message.replace(chr(34), chr(39))}"'
        )
        raise ServiceError(401, code, message, {"WWW-Authenticate": challenge}) from None


def role_of(workspace: Workspace, caller: Caller) -> str | None:
    return workspace.role_assignments.get(caller.oid)


def authorize(workspace: Workspace, caller: Caller, kind: str, action: str, scope: str) -> None:
    """403 AuthorizationFailed unless the caller's role on the workspace grants ``kind``."""
    role = role_of(workspace, caller)
    if role is None or kind not in ROLE_ACTIONS.get(role, frozenset()):
        deny(caller, action, scope)


def deny(caller: Caller, action: str, scope: str) -> None:
    raise ServiceError(
        403,
        "AuthorizationFailed",
        f"The client '{caller.name}' with object id '{caller.oid}' does not have authorization to perform action "
        f"'{PROVIDER}/{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, "
        "please refresh your credentials.",
    )


def is_admin(workspace: Workspace, caller: Caller) -> bool:
    return role_of(workspace, caller) in ADMIN_ROLES


@dataclass
class Bucket:
    tokens: float
    updated: float


class Throttle:
    """Token buckets per principal + subscription + region, reads and writes apart (ARM's 2024 model)."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.buckets: dict[tuple[str, str, str, str], Bucket] = {}

    def take(self, principal: str, subscription: str, region: str, write: bool) -> tuple[int, dict[str, str]]:
        """Spend one token; returns (remaining, headers) or raises 429 with Retry-After."""
        cfg = self.state.config.throttle
        burst, rate = (cfg.write_burst, cfg.write_rate) if write else (cfg.read_burst, cfg.read_rate)
        key = (principal, subscription.lower(), region, "w" if write else "r")
        now = time.monotonic()
        bucket = self.buckets.setdefault(key, Bucket(float(burst), now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        header = f"x-ms-ratelimit-remaining-subscription-{'writes' if write else 'reads'}"
        if bucket.tokens < 1:
            retry_after = max(1, math.ceil((1 - bucket.tokens) / rate))
            raise ServiceError(
                429,
                "TooManyRequests",
                "The request is being throttled as the limit has been reached for operation type - "
                f"{'Write' if write else 'Read'}. Please retry after {retry_after} seconds.",
                {"Retry-After": str(retry_after), header: "0"},
            )
        bucket.tokens -= 1
        return int(bucket.tokens), {header: str(int(bucket.tokens))}
