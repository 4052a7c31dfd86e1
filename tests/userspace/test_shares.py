"""The hub creating users' shares against the emulated Azure Files (no hub needed)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import uuid

import pytest

from aml_jupyterhub.userspace import UserSpace, UserSpaceError, ensure_share, grant, revoke
from support.no_threads import NoThreads

OWNER = str(uuid.uuid4())


@pytest.fixture
def space(files_url, storage_account, ca_bundle) -> UserSpace:
    return UserSpace(account_url=files_url, account_key=storage_account.key, ca_bundle=ca_bundle, quota_gib=7, timeout_seconds=5)


async def test_first_call_creates_the_share_then_it_is_reused(space, key_service, share_name):
    name = share_name()
    assert await ensure_share(space, name, OWNER) is True
    assert await ensure_share(space, name, OWNER.upper()) is False  # already there: not an error
    props = key_service.get_share_client(name).get_share_properties()
    assert props.quota == 7 and props.metadata == {"owner_oid": OWNER, "created_by": "aml-jupyterhub"}


async def test_two_servers_preparing_a_new_share_at_once_both_succeed_and_one_creates_it(space, share_name):
    """Both read "not found"; one create wins, the other's 409 ShareAlreadyExists is read as "exists"."""
    name = share_name()
    results = await asyncio.gather(ensure_share(space, name, OWNER), ensure_share(space, name, OWNER))
    assert sorted(results) == [False, True]


async def test_a_share_owned_by_someone_else_is_never_taken_over(space, key_service, share_name):
    name = share_name()
    key_service.create_share(name, metadata={"owner_oid": str(uuid.uuid4())})
    with pytest.raises(UserSpaceError, match="belongs to someone else"):
        await ensure_share(space, name, OWNER)


async def test_a_wrong_hub_key_is_a_clear_error(space, share_name):
    space.account_key = base64.b64encode(b"not the key" * 6).decode()
    with pytest.raises(UserSpaceError, match=r"refused the hub's credential \(check c.UserSpace.account_key\)") as caught:
        await ensure_share(space, share_name(), OWNER)
    assert space.account_key not in str(caught.value)


async def test_a_storage_outage_is_a_clear_error(space, control, share_name):
    control.inject(service="files", status=500, error_code="InternalError", count=10)
    with pytest.raises(UserSpaceError, match="answered 500 InternalError; try again in a few minutes"):
        await ensure_share(space, share_name(), OWNER)


async def test_one_policy_per_server_at_most_five_stale_ones_pruned_and_revoked_at_once(space, key_service, share_name):
    name = share_name()
    await ensure_share(space, name, OWNER)
    share = key_service.get_share_client(name)
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    await grant(space, name, "srv-stale", now=past)  # a server whose hub never revoked it: long expired
    for i in range(5):
        await grant(space, name, f"srv-{i}")  # the stale one is pruned to make room
    ids = [s.id for s in share.get_share_access_policy()["signed_identifiers"]]
    assert sorted(ids) == [f"srv-{i}" for i in range(5)]
    with pytest.raises(UserSpaceError, match="5 servers"):
        await grant(space, name, "srv-5")
    first = await grant(space, name, "srv-0")  # extending one of them is not a new policy
    assert first > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=space.sas_lifetime_minutes - 1)
    await revoke(space, name, "srv-0")
    assert "srv-0" not in [s.id for s in share.get_share_access_policy()["signed_identifiers"]]
    key_service.delete_share(name)


async def test_storage_calls_run_on_the_event_loop_without_a_worker_thread(space, share_name):
    """The hub's loop must not hand storage calls to its (small) default thread pool: a storm of
    spawns would queue there. Any executor use fails this test."""
    loop = asyncio.get_running_loop()
    saved = loop._default_executor
    loop.set_default_executor(NoThreads())
    try:
        name = share_name()
        assert await ensure_share(space, name, OWNER) is True
        await grant(space, name, "srv-a")
        await revoke(space, name, "srv-a")
    finally:
        loop._default_executor = saved
