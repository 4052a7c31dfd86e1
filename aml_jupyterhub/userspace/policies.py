"""One stored access policy per server on the user's share: the mount's credential, extended and revoked by the hub.

The instance mounts with a service SAS bound to its server's policy (``si=``,
no times or permissions of its own), so the SAS never changes while mounted:
the hub extends the policy on every start and while the server runs, and
deletes it on stop or delete, which revokes the SAS at once (Azure may take
up to 30 seconds to apply a policy change). A share holds at most five
policies; expired ones are pruned whenever the hub writes the list. The
account key never leaves the hub.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from azure.storage.fileshare import AccessPolicy, ShareSasPermissions, generate_share_sas

from .config import UserSpace
from .shares import UserSpaceError, hub_key, share_client, storage_errors

MAX_POLICIES = 5
PREFIX = "srv-"
#: What a mount needs: read, create, write, delete, list (never share management).
MOUNT_PERMISSIONS = ShareSasPermissions(read=True, create=True, write=True, delete=True, list=True)
_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


def policy_id(compute_name: str) -> str:
    """The policy of one server, named after its compute instance (at most 64 characters)."""
    return PREFIX + re.sub(r"[^A-Za-z0-9-]", "-", compute_name)[: 64 - len(PREFIX)]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _expiry_of(policy: AccessPolicy | None) -> dt.datetime | None:
    expiry = getattr(policy, "expiry", None)
    if isinstance(expiry, str):
        return _utc(dt.datetime.fromisoformat(expiry.replace("Z", "+00:00")[:26] + "+00:00"))
    return _utc(expiry)


async def _write(space: UserSpace, share: str, ident: str, expiry: dt.datetime | None, now: dt.datetime) -> None:
    """Read the share's policies, drop expired ones and ``ident``, then add ``ident`` unless ``expiry`` is None."""
    async with share_client(space, share) as client:
        current = (await client.get_share_access_policy()).get("signed_identifiers") or []
        wanted = _next_policies(share, current, ident, expiry, now)
        if wanted is not None:
            await client.set_share_access_policy(wanted)


def _next_policies(
    share: str, current: list[Any], ident: str, expiry: dt.datetime | None, now: dt.datetime
) -> dict[str, AccessPolicy | None] | None:
    """The share's next policy list (None: nothing to write)."""
    kept: dict[str, AccessPolicy | None] = {}
    for item in current:
        item_expiry = _expiry_of(item.access_policy)
        if item.id != ident and (item_expiry is None or item_expiry > now):
            kept[item.id] = item.access_policy
    if expiry is not None:
        if len(kept) >= MAX_POLICIES:
            raise UserSpaceError(
                f"share {share} already has {MAX_POLICIES} servers mounting it (Azure's limit); stop one and try again."
            )
        kept[ident] = AccessPolicy(permission=MOUNT_PERMISSIONS, start=now - dt.timedelta(minutes=5), expiry=expiry)
    return kept if expiry is not None or len(kept) != len(current) else None


async def _run(space: UserSpace, share: str, ident: str, expiry: dt.datetime | None, now: dt.datetime) -> None:
    async with _locks[f"{space.account_url}/{share}"]:  # read-modify-write of one list: one writer per share
        with storage_errors(space):
            await asyncio.wait_for(_write(space, share, ident, expiry, now), space.timeout_seconds * 4)


async def grant(space: UserSpace, share: str, ident: str, now: dt.datetime | None = None) -> dt.datetime:
    """Create or extend the server's policy to ``sas_lifetime_minutes`` from now; returns its expiry."""
    now = now or dt.datetime.now(dt.timezone.utc)
    expiry = now + dt.timedelta(minutes=space.sas_lifetime_minutes)
    await _run(space, share, ident, expiry, now)
    return expiry


async def revoke(space: UserSpace, share: str, ident: str) -> None:
    """Delete the server's policy: every SAS bound to it stops working."""
    await _run(space, share, ident, None, dt.datetime.now(dt.timezone.utc))


def bound_sas(space: UserSpace, share: str, ident: str) -> str:
    """A service SAS for ``share`` that takes its permissions and times from the policy ``ident`` (HTTPS only)."""
    return generate_share_sas(space.account_name, share, hub_key(space), policy_id=ident, protocol="https")


def renewal_due(expires_on: float | None, space: UserSpace, now: float) -> bool:
    """Extend once half the policy's lifetime has passed."""
    return expires_on is None or expires_on - now < space.sas_lifetime_minutes * 30


@dataclass(frozen=True)
class ShareAccess:
    """What an instance needs to mount the share. ``sas`` is a secret: never log it."""

    share_url: str
    share_folder: str
    mount_path: str
    mode: str  # "sas" or "rbac"
    expires_on: int
    sas: str | None = None

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def share_access(space: UserSpace, share: str, ident: str, expires_on: dt.datetime) -> ShareAccess:
    """The instance's credential: a SAS bound to its server's policy (``sas``), or a pointer to the broker (``rbac``)."""
    url = space.share_url(share)
    expiry = int(expires_on.timestamp())
    if space.instance_credential == "rbac":
        return ShareAccess(url, space.share_folder, space.mount_path, "rbac", expiry)
    return ShareAccess(url, space.share_folder, space.mount_path, "sas", expiry, bound_sas(space, share, ident))
