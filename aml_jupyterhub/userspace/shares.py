"""Creating a user's share, as the hub (which alone holds the account key).

Storage calls run on the hub's event loop through the async Storage SDK and
the hub's shared connection pool (``azure_http.SharedSession``): no worker
thread, a timeout around each call.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.fileshare.aio import ShareClient, ShareServiceClient

from ..azure_http import SharedSession, env_proxies
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


_services: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> settings -> client


def service_client(space: UserSpace) -> ShareServiceClient:
    """The hub's async client of the storage account: one per event loop and settings, on the shared pool.

    Built once: constructing a Storage client (its policies) costs more than a request.
    """
    settings = (space.account_url, space.account_name, hub_key(space), space.ca_bundle, space.timeout_seconds)
    clients = _services.setdefault(asyncio.get_running_loop(), {})
    if settings not in clients:
        clients[settings] = ShareServiceClient(
            account_url=space.account_url,
            credential={"account_name": space.account_name, "account_key": hub_key(space)},
            transport=SharedSession.transport(space.ca_bundle or None),
            proxies=env_proxies(space.account_url),
            retry_total=2,
            initial_backoff=1,
            increment_base=1,
            random_jitter_range=0,
            connection_timeout=space.timeout_seconds,
            read_timeout=space.timeout_seconds,
        )
    return clients[settings]


def share_client(space: UserSpace, share: str) -> ShareClient:
    """An async client of ``share`` as the hub (use it with ``async with``: that leaves the account's client open)."""
    return service_client(space).get_share_client(share)


async def _create_or_check(space: UserSpace, share: str, owner_oid: str) -> bool:
    """Read the share first (every spawn after a user's first finds it: one request), create it if absent."""
    async with share_client(space, share) as client:
        try:
            properties = await client.get_share_properties()
        except ResourceNotFoundError:
            try:
                await client.create_share(
                    quota=space.quota_gib, metadata={OWNER_METADATA: owner_oid, "created_by": "aml-jupyterhub"}
                )
                return True
            except ResourceExistsError:  # another server of this user created it a moment ago
                properties = await client.get_share_properties()
        existing = (properties.metadata or {}).get(OWNER_METADATA, "")
        if existing.lower() != owner_oid.lower():
            raise UserSpaceError(f"share {share} exists but belongs to someone else; ask an administrator.")
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
    """Create ``share`` with the configured quota and ``owner_oid`` metadata; False if it already was there."""
    with storage_errors(space):
        return await asyncio.wait_for(_create_or_check(space, share, owner_oid), space.timeout_seconds * 4)
