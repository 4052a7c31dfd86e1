"""Creating a user's share, as the hub (which alone holds the account key)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.fileshare import ShareClient

from ..user_errors import UserFacingError
from .config import UserSpace

OWNER_METADATA = "owner_oid"


class UserSpaceError(UserFacingError):
    """The user space cannot be prepared; the message is safe to show the user (no secrets)."""

    status, label = 503, "user-space"

    def __init__(self, detail: str) -> None:
        super().__init__(f"Your private file share could not be prepared: {detail}")


def hub_key(space: UserSpace) -> str:
    """The account key only the hub holds; a clear error when it is not configured."""
    if not space.account_key:
        raise UserSpaceError("the hub has no storage credential for it (set c.UserSpace.account_key).")
    return space.account_key


def share_client(space: UserSpace, share: str) -> ShareClient:
    return ShareClient(
        account_url=space.account_url,
        share_name=share,
        credential={"account_name": space.account_name, "account_key": hub_key(space)},
        connection_verify=space.ca_bundle or True,
        retry_total=2,
        initial_backoff=1,
        increment_base=1,
        random_jitter_range=0,
        connection_timeout=space.timeout_seconds,
        read_timeout=space.timeout_seconds,
    )


def _create_or_check(space: UserSpace, share: str, owner_oid: str) -> bool:
    client = share_client(space, share)
    try:
        client.create_share(quota=space.quota_gib, metadata={OWNER_METADATA: owner_oid, "created_by": "aml-jupyterhub"})
        return True
    except ResourceExistsError:
        existing = (client.get_share_properties().metadata or {}).get(OWNER_METADATA, "")
        if existing.lower() != owner_oid.lower():
            raise UserSpaceError(f"share {share} exists but belongs to someone else; ask an administrator.") from None
        return False


@contextmanager
def storage_errors(space: UserSpace) -> Iterator[None]:
    """Turn the Storage SDK's failures into a :class:`UserSpaceError` the user may see (no secrets)."""
    try:
        yield
    except UserSpaceError:
        raise
    except ClientAuthenticationError:
        raise UserSpaceError(
            f"storage account {space.account_name} refused the hub's credential (check c.UserSpace.account_key)."
        ) from None
    except (ServiceRequestError, ServiceResponseError, asyncio.TimeoutError):
        raise UserSpaceError(f"storage account {space.account_name} cannot be reached; try again in a few minutes.") from None
    except HttpResponseError as e:
        code = getattr(e, "error_code", None) or ""
        code = getattr(code, "value", code)  # the SDK's StorageErrorCode enum, or a plain string
        raise UserSpaceError(
            f"storage account {space.account_name} answered {e.status_code} {code}".rstrip() + "; try again in a few minutes."
        ) from None


async def ensure_share(space: UserSpace, share: str, owner_oid: str) -> bool:
    """Create ``share`` with the configured quota and ``owner_oid`` metadata; False if it already was there.

    Runs the blocking Storage SDK in a worker thread, with a timeout.
    """
    with storage_errors(space):
        return await asyncio.wait_for(
            asyncio.to_thread(_create_or_check, space, share, owner_oid), space.timeout_seconds * 4
        )
