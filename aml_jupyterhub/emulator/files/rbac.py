"""Bearer tokens on Azure Files: OAuth over REST, authorized by Azure RBAC.

What Azure does, and so the emulator:

- File and directory operations accept a Storage token (audience
  ``https://storage.azure.com``) from version 2022-11-02, but only with
  ``x-ms-file-request-intent: backup``; without it Azure answers
  ``400 MissingRequiredHeader`` (``HeaderName: x-ms-file-request-intent``).
  Older versions: ``403 AuthenticationFailed`` ("Authentication scheme Bearer
  is not supported in this version.").
- They need data actions: ``fileshares/files/read`` plus
  ``readFileBackupSemantics`` to read or list, ``fileshares/files/write`` plus
  ``writeFileBackupSemantics`` to create, write or delete (Microsoft's
  "Permissions for calling data operations" table). Only the two
  *Privileged* built-in roles carry the backup-semantics actions; the SMB
  share roles do not, so they are refused over REST.
- Share and service management (create/delete share, share properties and
  metadata, list shares) with a bearer token: refused with
  ``409 FileOAuthManagementApiRestrictedToSrp`` before version 2024-11-04;
  from 2024-11-04 allowed, but it needs the *management* actions
  ``fileServices/shares/read|write|delete`` (Reader, Contributor, Owner,
  Storage Account Contributor), which the Privileged data roles do NOT
  include. So the app's service principal, with only "Storage File Data
  Privileged Contributor", cannot create a share by OAuth on the data plane;
  it must use the account key, an account SAS, or ARM (the storage resource
  provider). The SDK 12.27 sends version 2026-10-06.
- Missing or invalid token: ``401 InvalidAuthenticationInfo`` with a
  ``WWW-Authenticate: Bearer authorization_uri=... resource_id=...``
  challenge; expired: the same with "Lifetime validation failed. The token
  is expired."; a valid token without the actions:
  ``403 AuthorizationPermissionMismatch``.

Role assignments come from :class:`StorageAccount.role_assignments`: key
``"<oid>"`` (whole account) or ``"<oid>/<share>"`` (one share); the oid may be
the caller's or one of its groups'.
"""

from __future__ import annotations

from ..core.config import StorageAccount
from ..core.handlers import ServiceError
from ..core.keys import TokenError
from ..core.state import EmulatorState
from ..core.tokens import Caller, require_bearer
from .request import Operation, StorageRequest, auth_failed, not_authorized

_FS = "Microsoft.Storage/storageAccounts/fileServices/"
FILES_READ = _FS + "fileshares/files/read"
FILES_WRITE = _FS + "fileshares/files/write"
FILES_DELETE = _FS + "fileshares/files/delete"
MODIFY_PERMISSIONS = _FS + "fileshares/files/modifypermissions/action"
READ_BACKUP = _FS + "readFileBackupSemantics/action"
WRITE_BACKUP = _FS + "writeFileBackupSemantics/action"
SHARES_READ = _FS + "shares/read"
SHARES_WRITE = _FS + "shares/write"
SHARES_DELETE = _FS + "shares/delete"
SERVICE_READ = _FS + "read"
SERVICE_WRITE = _FS + "write"

READ_FILES = (FILES_READ, READ_BACKUP)
WRITE_FILES = (FILES_WRITE, WRITE_BACKUP)

_MANAGE = frozenset({SHARES_READ, SHARES_WRITE, SHARES_DELETE, SERVICE_READ, SERVICE_WRITE})

#: Built-in roles: the actions and data actions relevant to Azure Files.
ROLES: dict[str, frozenset[str]] = {
    "Storage File Data Privileged Contributor": frozenset(
        {FILES_READ, FILES_WRITE, FILES_DELETE, MODIFY_PERMISSIONS, READ_BACKUP, WRITE_BACKUP}
    ),
    "Storage File Data Privileged Reader": frozenset({FILES_READ, READ_BACKUP}),
    "Storage File Data SMB Share Contributor": frozenset({FILES_READ, FILES_WRITE, FILES_DELETE}),
    "Storage File Data SMB Share Reader": frozenset({FILES_READ}),
    "Storage Account Contributor": _MANAGE,
    "Contributor": _MANAGE,
    "Owner": _MANAGE,
    "Reader": frozenset({SHARES_READ, SERVICE_READ}),
}

OAUTH_FILES_VERSION = "2022-11-02"
OAUTH_MANAGEMENT_VERSION = "2024-11-04"
INTENT_HEADER = "x-ms-file-request-intent"


def challenge(state: EmulatorState, tenant_id: str) -> dict[str, str]:
    """The ``WWW-Authenticate`` header Storage sends with a 401."""
    authority = state.urls.get("authority", "https://login.microsoftonline.com")
    return {
        "WWW-Authenticate": f"Bearer authorization_uri={authority}/{tenant_id}/oauth2/authorize "
        "resource_id=https://storage.azure.com"
    }


def _default_tenant(state: EmulatorState) -> str:
    return state.config.tenants[0].id if state.config.tenants else "common"


def no_credentials(state: EmulatorState) -> ServiceError:
    """An anonymous request: Azure Files allows none."""
    return ServiceError(
        401,
        "NoAuthenticationInformation",
        "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
        challenge(state, _default_tenant(state)),
    )


def _invalid_token(state: EmulatorState, error: TokenError) -> ServiceError:
    detail = "Lifetime validation failed. The token is expired." if error.expired else f"{error}"
    return ServiceError(
        401,
        "InvalidAuthenticationInfo",
        "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
        challenge(state, _default_tenant(state)),
        AuthenticationErrorDetail=detail,
    )


def authorize_bearer(state: EmulatorState, account: StorageAccount, request: StorageRequest, op: Operation) -> Caller:
    """Validate the token, the version, the intent header and the caller's roles for ``op``."""
    if request.version < OAUTH_FILES_VERSION:
        raise auth_failed("Authentication scheme Bearer is not supported in this version.")
    try:
        caller = require_bearer(state, request.header("Authorization"), "storage")
    except TokenError as e:
        raise _invalid_token(state, e) from e
    if op.management and request.version < OAUTH_MANAGEMENT_VERSION:
        raise ServiceError(
            409,
            "FileOAuthManagementApiRestrictedToSrp",
            "This API does not support bearer tokens. For OAuth, use the Storage Resource Provider APIs instead. "
            "Learn more: https://aka.ms/azurefiles/restapi.",
        )
    if op.backup:
        _require_intent(request)
    if not set(op.actions) <= granted_actions(state, account, caller, request.share):
        raise not_authorized("AuthorizationPermissionMismatch", "permission")
    return caller


def _require_intent(request: StorageRequest) -> None:
    intent = request.header(INTENT_HEADER)
    if not intent:
        raise ServiceError(
            400,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
            HeaderName=INTENT_HEADER,
        )
    if intent.lower() != "backup":
        raise ServiceError(
            400,
            "InvalidHeaderValue",
            "The value for one of the HTTP headers is not in the correct format.",
            HeaderName=INTENT_HEADER,
            HeaderValue=intent,
        )


def principal_ids(state: EmulatorState, caller: Caller) -> set[str]:
    """The caller's object id and, for users, its groups' ids (RBAC honours group assignments)."""
    ids = {caller.oid.lower()}
    user = None if caller.is_app else state.config.user(caller.oid)
    if user is not None:
        ids |= {g.lower() for g in user.groups}
    return ids


def granted_actions(state: EmulatorState, account: StorageAccount, caller: Caller, share: str | None) -> set[str]:
    """Union of the actions of every role assigned to the caller at the account or ``share`` scope."""
    if not caller.is_app and "user_impersonation" not in caller.scopes:
        return set()
    ids = principal_ids(state, caller)
    granted: set[str] = set()
    for key, role in account.role_assignments.items():
        oid, _, scope = key.partition("/")
        if oid.lower() in ids and (not scope or scope == share):
            granted |= ROLES.get(role, frozenset())
    return granted
