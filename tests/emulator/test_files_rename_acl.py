"""Rename File/Directory and stored access policies (Set/Get Share ACL, SAS with ``si``) of the emulated
Azure Files, driven by the real azure-storage-file-share SDK: what an rclone mount of a user's share sends."""

from __future__ import annotations

import datetime as dt

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError
from azure.storage.fileshare import (
    AccessPolicy,
    ShareClient,
    ShareDirectoryClient,
    ShareFileClient,
    ShareSasPermissions,
    generate_file_sas,
    generate_share_sas,
)

from azure.storage.fileshare._generated.models import SignedIdentifier, SignedIdentifiers

RW = ShareSasPermissions(read=True, create=True, write=True, delete=True, list=True)


def utc_in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[int, str]:
    return excinfo.value.status_code, excinfo.value.error_code


def policy(expiry_in: float = 3600, permission: ShareSasPermissions | str | None = RW) -> AccessPolicy:
    return AccessPolicy(permission=permission, expiry=utc_in(expiry_in), start=utc_in(-300))


def bound_sas(account, share: str, policy_id: str) -> str:
    return generate_share_sas(account.name, share, account.key, policy_id=policy_id, protocol="https")


# -- rename -------------------------------------------------------------------------------
def test_rename_file_moves_bytes_and_metadata_and_refuses_to_overwrite_unless_asked(new_share):
    new_share.create_directory("d")
    source = new_share.get_file_client("d/a.partial")
    source.upload_file(b"hello", metadata={"mtime": "1"})
    new_share.get_file_client("b.txt").upload_file(b"old")
    with pytest.raises(ResourceExistsError) as excinfo:
        source.rename_file("b.txt")
    assert error_of(excinfo) == (409, "ResourceAlreadyExists")
    renamed = source.rename_file("b.txt", overwrite=True)
    assert renamed.download_file().readall() == b"hello"
    assert renamed.get_file_properties().metadata == {"mtime": "1"}
    assert [e["name"] for e in new_share.list_directories_and_files("d")] == []


def test_rename_directory_moves_its_tree_and_never_replaces(new_share):
    new_share.create_directory("src")
    new_share.get_directory_client("src").create_subdirectory("inner")
    new_share.get_file_client("src/inner/f.txt").upload_file(b"x", metadata={"k": "v"})
    new_share.create_directory("taken")
    with pytest.raises(ResourceExistsError):
        new_share.get_directory_client("src").rename_directory("taken")
    new_share.get_directory_client("src").rename_directory("dst")
    moved = new_share.get_file_client("dst/inner/f.txt")
    assert moved.download_file().readall() == b"x"
    assert moved.get_file_properties().metadata == {"k": "v"}
    assert sorted(e["name"] for e in new_share.list_directories_and_files()) == ["dst", "taken"]


def test_rename_with_a_share_sas_works_and_a_file_sas_cannot_reach_another_file(new_share, storage_account, sas_client):
    new_share.get_file_client("a.txt").upload_file(b"a")
    share_sas = generate_share_sas(storage_account.name, new_share.share_name, storage_account.key, permission=RW, expiry=utc_in(600))
    file_client = sas_client(ShareFileClient, share_sas, share_name=new_share.share_name, file_path="a.txt")
    assert file_client.rename_file("b.txt").download_file().readall() == b"a"
    target_only = generate_file_sas(
        storage_account.name, new_share.share_name, ["c.txt"], storage_account.key, permission="rcwd", expiry=utc_in(600)
    )
    client = sas_client(ShareFileClient, target_only, share_name=new_share.share_name, file_path="b.txt")
    with pytest.raises(HttpResponseError) as excinfo:
        client._client.file.rename(rename_source=client.url.split("?")[0])  # noqa: SLF001 - the raw operation
    assert excinfo.value.status_code == 403


def test_rename_source_must_be_in_the_same_share(new_share, key_service, share_name):
    other = key_service.create_share(share_name(), quota=1)
    try:
        other.get_file_client("x.txt").upload_file(b"x")
        with pytest.raises(HttpResponseError) as excinfo:
            new_share.get_file_client("x.txt")._client.file.rename(  # noqa: SLF001 - raw: the SDK never crosses shares
                rename_source=other.get_file_client("x.txt").url
            )
        assert excinfo.value.status_code == 400
        assert excinfo.value.response.headers["x-ms-error-code"] == "InvalidHeaderValue"
        assert other.get_file_client("x.txt").download_file().readall() == b"x"
    finally:
        other.delete_share()


# -- stored access policies ---------------------------------------------------------------------
def test_share_acl_round_trips_and_allows_at_most_five_policies(new_share):
    new_share.set_share_access_policy({"srv-a": policy(), "srv-b": policy(permission="rl")})
    got = new_share.get_share_access_policy()["signed_identifiers"]
    assert [(s.id, s.access_policy.permission) for s in got] == [("srv-a", "rcwdl"), ("srv-b", "rl")]
    six = [SignedIdentifier(id=f"p{i}", access_policy=policy()._to_generated()) for i in range(6)]  # noqa: SLF001
    with pytest.raises(HttpResponseError) as excinfo:  # the SDK refuses six itself: send them raw
        new_share._client.share.set_access_policy(share_acl=SignedIdentifiers(items_property=six))  # noqa: SLF001
    assert excinfo.value.status_code == 400
    assert len(new_share.get_share_access_policy()["signed_identifiers"]) == 2  # nothing changed


def test_sas_bound_to_a_policy_is_extended_and_revoked_through_the_policy(new_share, storage_account, sas_client, control):
    new_share.set_share_access_policy({"srv-1": policy(expiry_in=600)})
    client = sas_client(ShareClient, bound_sas(storage_account, new_share.share_name, "srv-1"), share_name=new_share.share_name)
    client.create_directory("d")
    new_share.set_share_access_policy({"srv-1": policy(expiry_in=7200)})  # the hub extends it; the SAS stays the same
    control.advance_clock(3600)
    try:
        assert [e["name"] for e in client.list_directories_and_files()] == ["d"]
    finally:
        control.advance_clock(-3600)
    new_share.set_share_access_policy({})  # the hub deletes it: revoked at once
    with pytest.raises(ClientAuthenticationError) as excinfo:
        list(client.list_directories_and_files())
    assert error_of(excinfo) == (403, "AuthenticationFailed")


def test_a_field_in_both_the_sas_and_its_policy_is_a_bad_request(new_share, storage_account, sas_client):
    new_share.set_share_access_policy({"srv-1": policy()})
    both = generate_share_sas(storage_account.name, new_share.share_name, storage_account.key, policy_id="srv-1", permission="r")
    with pytest.raises(HttpResponseError) as excinfo:
        list(sas_client(ShareClient, both, share_name=new_share.share_name).list_directories_and_files())
    assert excinfo.value.status_code == 400


def test_policy_sas_cannot_manage_the_share_acl(new_share, storage_account, sas_client):
    new_share.set_share_access_policy({"srv-1": policy()})
    client = sas_client(ShareClient, bound_sas(storage_account, new_share.share_name, "srv-1"), share_name=new_share.share_name)
    with pytest.raises(HttpResponseError) as excinfo:
        client.set_share_access_policy({})
    assert excinfo.value.status_code == 403
    directory = sas_client(ShareDirectoryClient, bound_sas(storage_account, new_share.share_name, "srv-1"), share_name=new_share.share_name, directory_path="")
    assert list(directory.list_directories_and_files()) == []
