"""The emulated Azure Files data plane, driven by the real azure-storage-file-share SDK over HTTPS."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.fileshare import (
    AccountSasPermissions,
    ResourceTypes,
    ShareClient,
    ShareFileClient,
    ShareServiceClient,
    generate_account_sas,
    generate_file_sas,
    generate_share_sas,
)

from aml_jupyterhub.emulator.core.config import default_config
from aml_jupyterhub.emulator.files.model import GIB
from aml_jupyterhub.emulator.files.auth import header_sort_key
from aml_jupyterhub.emulator.files.sas import account_string_to_sign, service_string_to_sign

ACCOUNT = "userfilesdemo"
ALICE = default_config().user("alice@contoso.example")
BOB = default_config().user("bob@contoso.example")
PRIVILEGED = "Storage File Data Privileged Contributor"


def utc_in(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)


def error_of(excinfo: pytest.ExceptionInfo) -> tuple[int, str]:
    error = excinfo.value
    return error.status_code, error.error_code


def share_sas(account, share: str, permission: str = "rcwdl", expiry_in: float = 3600) -> str:
    return generate_share_sas(account.name, share, account.key, permission=permission, expiry=utc_in(expiry_in))


def full_account_sas(account) -> str:
    return generate_account_sas(
        account.name,
        account.key,
        ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, create=True),
        expiry=utc_in(3600),
    )


# -- shares with the account key -------------------------------------------------------
def test_create_share_with_quota_and_metadata_reads_back(key_service, share_name):
    name = share_name()
    share = key_service.create_share(name, quota=7, metadata={"owner": "alice", "purpose": "demo"})
    try:
        props = share.get_share_properties()
        assert props.quota == 7
        assert props.metadata == {"owner": "alice", "purpose": "demo"}
        assert props.etag and props.last_modified
        listed = {s.name: s for s in key_service.list_shares(name_starts_with=name, include_metadata=True)}
        assert listed[name].quota == 7 and listed[name].metadata["owner"] == "alice"
    finally:
        share.delete_share(delete_snapshots=True)  # x-ms-delete-snapshots is tolerated
    assert name not in {s.name for s in key_service.list_shares(name_starts_with=name)}


def test_set_share_quota_and_metadata_change_etag(new_share):
    before = new_share.get_share_properties()
    new_share.set_share_quota(3)
    new_share.set_share_metadata({"stage": "two"})
    after = new_share.get_share_properties()
    assert (after.quota, after.metadata) == (3, {"stage": "two"})
    assert after.etag != before.etag


def test_existing_share_is_share_already_exists(key_service, new_share):
    with pytest.raises(ResourceExistsError) as excinfo:
        key_service.create_share(new_share.share_name)
    assert error_of(excinfo) == (409, "ShareAlreadyExists")
    response = excinfo.value.response
    assert response.headers["x-ms-error-code"] == "ShareAlreadyExists"
    assert "<Code>ShareAlreadyExists</Code>" in response.text()
    assert "RequestId:" in response.text()


def test_list_shares_pages_with_marker(key_service, share_name):
    prefix = share_name()
    shares = [key_service.create_share(f"{prefix}-{i}") for i in range(3)]
    try:
        pages = key_service.list_shares(name_starts_with=prefix, results_per_page=2).by_page()
        assert [len(list(page)) for page in pages] == [2, 1]
    finally:
        for share in shares:
            share.delete_share()


def test_unknown_account_is_refused(emulator, storage_account, sdk_options):
    client = ShareServiceClient(
        f"{emulator.endpoints['files']}/nosuchaccount",
        credential={"account_name": "nosuchaccount", "account_key": storage_account.key},
        **sdk_options,
    )
    with pytest.raises(HttpResponseError) as excinfo:
        client.create_share("whatever")
    assert error_of(excinfo) == (400, "InvalidUri")


# -- directories and files -----------------------------------------------------------
def test_nested_directories_with_encoded_and_unicode_names(new_share, emulator):
    top = new_share.create_directory("top dir")
    odd = top.create_subdirectory("100% done & more+")
    odd.create_subdirectory("naïve ünïcode 雪")
    names = {item["name"] for item in new_share.list_directories_and_files("top dir/100% done & more+")}
    assert names == {"naïve ünïcode 雪"}
    on_disk = emulator.state.files_root / ACCOUNT / new_share.share_name / "top dir" / "100% done & more+" / "naïve ünïcode 雪"
    assert on_disk.is_dir()


def test_properties_of_a_missing_share_is_share_not_found(key_service, share_name):
    """The hub reads a user's share before creating it: a missing share must answer 404 ShareNotFound."""
    with pytest.raises(ResourceNotFoundError) as excinfo:
        key_service.get_share_client(share_name()).get_share_properties()
    assert error_of(excinfo) == (404, "ShareNotFound")


def test_directory_conflicts_and_missing_parents(new_share):
    directory = new_share.create_directory("d")
    with pytest.raises(ResourceExistsError) as excinfo:
        new_share.create_directory("d")
    assert error_of(excinfo) == (409, "ResourceAlreadyExists")
    with pytest.raises(ResourceNotFoundError) as excinfo:
        new_share.create_directory("missing/child")
    assert error_of(excinfo) == (404, "ParentNotFound")
    directory.upload_file("f.txt", b"x")
    with pytest.raises(HttpResponseError) as excinfo:
        directory.delete_directory()
    assert error_of(excinfo) == (409, "DirectoryNotEmpty")
    directory.delete_file("f.txt")
    directory.delete_directory()
    assert not directory.exists()


def test_upload_and_download_match_bytes_on_disk(new_share, control):
    data = os.urandom(5 * 1024 * 1024 + 17)  # more than one 4 MiB put range
    file = new_share.create_directory("data").get_file_client("blob.bin")
    file.upload_file(data)
    assert file.download_file().readall() == data
    assert file.download_file(offset=4 * 1024 * 1024 - 3, length=10).readall() == data[4 * 1024 * 1024 - 3 :][:10]
    path = Path(control.files_share_path(ACCOUNT, new_share.share_name)) / "data" / "blob.bin"
    assert path.read_bytes() == data
    assert file.get_file_properties().size == len(data)


def test_ranged_get_answers_206_with_content_range(new_share):
    file = new_share.get_file_client("r.txt")
    file.upload_file(b"0123456789")
    responses = []
    stream = file.download_file(offset=2, length=3, raw_response_hook=lambda r: responses.append(r.http_response))
    assert stream.readall() == b"234"
    assert responses[0].status_code == 206
    assert responses[0].headers["Content-Range"] == "bytes 2-4/10"


def test_empty_file_downloads_as_empty(new_share):
    file = new_share.get_file_client("empty")
    file.upload_file(b"")
    assert file.download_file().readall() == b""


def test_file_properties_metadata_and_smb_headers(new_share):
    file = new_share.get_file_client("props.txt")
    created = file.create_file(4, metadata={"kind": "note"})
    assert created["file_id"] and created["file_parent_id"]
    file.set_http_headers(content_settings=_content_type("text/plain"))
    file.set_file_metadata({"kind": "changed"})
    props = file.get_file_properties()
    assert props.metadata == {"kind": "changed"}
    assert props.content_settings.content_type == "text/plain"
    assert props.file_attributes == "Archive" and props.permission_key and props.creation_time
    file.delete_file()
    assert not file.exists()


def _content_type(value: str):
    from azure.storage.fileshare import ContentSettings

    return ContentSettings(content_type=value)


def test_quota_is_enforced_on_writes(new_share):
    first = new_share.get_file_client("first.bin")
    first.create_file(600 * 1024 * 1024)  # sparse: counts toward usage, costs no disk
    with pytest.raises(HttpResponseError) as excinfo:
        new_share.get_file_client("second.bin").create_file(600 * 1024 * 1024)
    assert error_of(excinfo) == (403, "ShareSizeLimitReached")
    with pytest.raises(HttpResponseError) as excinfo:
        first.resize_file(GIB + 1)
    assert error_of(excinfo) == (403, "ShareSizeLimitReached")


# -- Shared Key ------------------------------------------------------------------------
def test_wrong_account_key_is_authentication_failed(files_url, storage_account, new_share, sdk_options):
    wrong = {"account_name": storage_account.name, "account_key": "d3JvbmcK" * 8}
    client = ShareClient(files_url, new_share.share_name, credential=wrong, **sdk_options)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        client.get_share_properties()
    assert error_of(excinfo) == (403, "AuthenticationFailed")
    with pytest.raises(ClientAuthenticationError) as excinfo:
        client.create_directory("nope")
    body = excinfo.value.response.text()
    assert "<AuthenticationErrorDetail>" in body and storage_account.key not in body


def test_header_order_matches_the_sdk_signer():
    from azure.storage.fileshare._shared.authentication import _storage_header_sort

    names = ["x-ms-version", "x-ms-meta-a_b", "x-ms-meta-a1", "x-ms-meta-ab", "x-ms-file-permission-key",
             "x-ms-file-permission", "x-ms-date", "x-ms-content-length", "x-ms-client-request-id", "x-ms-type"]
    expected = [name for name, _ in _storage_header_sort([(n, "") for n in names])]
    assert sorted(names, key=header_sort_key) == expected


# -- SAS ----------------------------------------------------------------------------------
def test_sas_strings_to_sign_follow_the_signed_version():
    params = {"sp": "r", "se": "2030-01-01", "sv": "2019-12-12", "ss": "f", "srt": "o", "spr": "https"}
    assert account_string_to_sign("acct", params) == "acct\nr\nf\no\n\n2030-01-01\n\nhttps\n2019-12-12\n"
    newer = {**params, "sv": "2021-06-08"}
    assert account_string_to_sign("acct", newer).endswith("2021-06-08\n\n")  # + empty encryption scope
    oldest = {"sp": "r", "se": "2030-01-01", "sv": "2015-02-21", "sr": "s"}
    assert service_string_to_sign(oldest, "/file/acct/s") == "r\n\n2030-01-01\n/file/acct/s\n\n2015-02-21\n\n\n\n\n"


def test_share_sas_works_on_its_share_only(new_share, key_service, share_name, storage_account, sas_client, control):
    other = key_service.create_share(share_name())
    try:
        sas = share_sas(storage_account, new_share.share_name)
        mine = sas_client(ShareClient, sas, share_name=new_share.share_name)
        mine.create_directory("via-sas").upload_file("f.txt", b"sas bytes")
        assert mine.get_file_client("via-sas/f.txt").download_file().readall() == b"sas bytes"
        foreign = sas_client(ShareClient, sas, share_name=other.share_name)
        with pytest.raises(ClientAuthenticationError) as excinfo:
            foreign.create_directory("intruder")
        assert error_of(excinfo) == (403, "AuthenticationFailed")
        with pytest.raises(HttpResponseError) as excinfo:
            mine.get_share_properties()  # a service SAS cannot touch share properties
        assert error_of(excinfo) == (403, "AuthorizationResourceTypeMismatch")
    finally:
        other.delete_share()
    principals = {r["principal"] for r in control.requests(service="files") if new_share.share_name in r["path"]}
    assert f"sas:{ACCOUNT}" in principals and f"sharedkey:{ACCOUNT}" in principals


def test_expired_and_not_yet_valid_sas_are_refused(new_share, storage_account, sas_client, control):
    expired = share_sas(storage_account, new_share.share_name, expiry_in=-60)
    with pytest.raises(ClientAuthenticationError) as excinfo:
        sas_client(ShareClient, expired, share_name=new_share.share_name).create_directory("late")
    assert error_of(excinfo) == (403, "AuthenticationFailed")
    assert "Signature not valid in the specified time frame" in excinfo.value.response.text()
    valid_for_an_hour = share_sas(storage_account, new_share.share_name, permission="l")
    client = sas_client(ShareClient, valid_for_an_hour, share_name=new_share.share_name)
    assert list(client.list_directories_and_files()) == []
    control.advance_clock(7200)  # the emulator's clock decides, not the test's
    try:
        with pytest.raises(ClientAuthenticationError):
            list(client.list_directories_and_files())
    finally:
        control.advance_clock(-7200)
    future = generate_share_sas(
        storage_account.name, new_share.share_name, storage_account.key, permission="l", start=utc_in(3600), expiry=utc_in(7200)
    )
    with pytest.raises(ClientAuthenticationError):
        list(sas_client(ShareClient, future, share_name=new_share.share_name).list_directories_and_files())


def test_read_only_file_sas_refuses_a_write(new_share, storage_account, sas_client):
    new_share.create_directory("ro").upload_file("f.txt", b"read me")
    sas = generate_file_sas(
        storage_account.name, new_share.share_name, ["ro", "f.txt"], storage_account.key, permission="r", expiry=utc_in(600)
    )
    file = sas_client(ShareFileClient, sas, share_name=new_share.share_name, file_path="ro/f.txt")
    assert file.download_file().readall() == b"read me"
    with pytest.raises(HttpResponseError) as excinfo:
        file.upload_file(b"overwrite")
    assert error_of(excinfo) == (403, "AuthorizationPermissionMismatch")
    other = sas_client(ShareFileClient, sas, share_name=new_share.share_name, file_path="ro/other.txt")
    with pytest.raises(ClientAuthenticationError):
        other.download_file()  # signed for ro/f.txt only


def test_account_sas_manages_shares_and_files(storage_account, share_name, sas_client):
    service = sas_client(ShareServiceClient, full_account_sas(storage_account))
    name = share_name()
    share = service.create_share(name, quota=2)
    share.get_file_client("a.txt").upload_file(b"account sas")
    assert share.get_file_client("a.txt").download_file().readall() == b"account sas"
    assert name in {s.name for s in service.list_shares(name_starts_with=name)}
    share.delete_share()


def test_account_sas_without_container_type_cannot_create_share(storage_account, share_name, sas_client):
    objects_only = generate_account_sas(
        storage_account.name, storage_account.key, ResourceTypes(object=True), AccountSasPermissions(write=True, create=True), expiry=utc_in(600)
    )
    with pytest.raises(HttpResponseError) as excinfo:
        sas_client(ShareServiceClient, objects_only).create_share(share_name())
    assert error_of(excinfo) == (403, "AuthorizationResourceTypeMismatch")


# -- bearer tokens and RBAC -------------------------------------------------------------------
def test_share_scoped_role_allows_that_share_only(new_share, key_service, share_name, control, token_for, bearer_client):
    other = key_service.create_share(share_name())
    try:
        control.files_assign_role(ACCOUNT, ALICE.oid, PRIVILEGED, share=new_share.share_name)
        credential = token_for(ALICE.username)
        mine = bearer_client(ShareClient, credential, share_name=new_share.share_name)
        mine.create_directory("alice").upload_file("notes.txt", b"by alice")
        assert mine.get_file_client("alice/notes.txt").download_file().readall() == b"by alice"
        with pytest.raises(HttpResponseError) as excinfo:
            bearer_client(ShareClient, credential, share_name=other.share_name).create_directory("alice")
        assert error_of(excinfo) == (403, "AuthorizationPermissionMismatch")
    finally:
        other.delete_share()
    principals = {r["principal"] for r in control.requests(service="files") if new_share.share_name in r["path"]}
    assert ALICE.username in principals


def test_bearer_without_role_is_refused(new_share, token_for, bearer_client):
    client = bearer_client(ShareClient, token_for(BOB.username), share_name=new_share.share_name)
    with pytest.raises(HttpResponseError) as excinfo:
        list(client.list_directories_and_files())
    assert error_of(excinfo) == (403, "AuthorizationPermissionMismatch")


def test_privileged_reader_reads_but_cannot_write(new_share, control, token_for, bearer_client):
    new_share.get_file_client("shared.txt").upload_file(b"readable")
    control.files_assign_role(ACCOUNT, BOB.oid, "Storage File Data Privileged Reader")
    file = bearer_client(ShareFileClient, token_for(BOB.username), share_name=new_share.share_name, file_path="shared.txt")
    assert file.download_file().readall() == b"readable"
    with pytest.raises(HttpResponseError) as excinfo:
        file.upload_file(b"changed")
    assert error_of(excinfo) == (403, "AuthorizationPermissionMismatch")


def test_expired_token_is_refused_with_a_challenge(new_share, control, token_for, bearer_client):
    control.files_assign_role(ACCOUNT, ALICE.oid, PRIVILEGED)
    client = bearer_client(ShareClient, token_for(ALICE.username), share_name=new_share.share_name)
    assert list(client.list_directories_and_files()) == []
    control.advance_clock(2 * 3600)
    try:
        with pytest.raises(ClientAuthenticationError) as excinfo:
            list(client.list_directories_and_files())
    finally:
        control.advance_clock(-2 * 3600)
    assert error_of(excinfo) == (401, "InvalidAuthenticationInfo")
    assert excinfo.value.response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert "expired" in excinfo.value.response.text()


def test_bearer_without_backup_intent_is_a_missing_header(new_share, control, files_url, ca_bundle):
    control.files_assign_role(ACCOUNT, ALICE.oid, PRIVILEGED)
    token = control.mint_token(ALICE.username, "https://storage.azure.com/user_impersonation")
    url = f"{files_url}/{new_share.share_name}?restype=directory&comp=list"
    headers = {"Authorization": f"Bearer {token}", "x-ms-version": "2025-11-05"}
    r = requests.get(url, headers=headers, verify=ca_bundle, timeout=10)
    assert (r.status_code, r.headers["x-ms-error-code"]) == (400, "MissingRequiredHeader")
    assert "<HeaderName>x-ms-file-request-intent</HeaderName>" in r.text
    for name in ("x-ms-request-id", "x-ms-version", "Date"):
        assert r.headers[name]
    ok = requests.get(url, headers={**headers, "x-ms-file-request-intent": "backup"}, verify=ca_bundle, timeout=10)
    assert ok.status_code == 200 and "<EnumerationResults" in ok.text


def test_share_management_by_oauth_needs_a_management_role(share_name, control, token_for, bearer_client):
    control.files_assign_role(ACCOUNT, ALICE.oid, PRIVILEGED)  # data role only
    credential = token_for(ALICE.username)
    with pytest.raises(HttpResponseError) as excinfo:
        bearer_client(ShareServiceClient, credential).create_share(share_name())
    assert error_of(excinfo) == (403, "AuthorizationPermissionMismatch")
    old = bearer_client(ShareServiceClient, credential, api_version="2024-08-04")
    with pytest.raises(HttpResponseError) as excinfo:
        old.create_share(share_name())
    assert error_of(excinfo) == (409, "FileOAuthManagementApiRestrictedToSrp")
    control.files_assign_role(ACCOUNT, ALICE.oid, "Storage Account Contributor", share=None)
    share = bearer_client(ShareServiceClient, credential).create_share(share_name(), quota=1)
    assert share.get_share_properties().quota == 1
    share.delete_share()


# -- wire details, control API, path safety -------------------------------------------------
def test_every_response_carries_request_id_version_and_date(new_share):
    seen = []
    hook = lambda r: seen.append(r.http_response)  # noqa: E731
    new_share.get_share_properties(raw_response_hook=hook)
    with pytest.raises(ResourceNotFoundError):
        new_share.get_file_client("absent").get_file_properties(raw_response_hook=hook)
    assert [r.status_code for r in seen] == [200, 404]
    for response in seen:
        assert response.headers["x-ms-request-id"] and response.headers["x-ms-version"] and response.headers["Date"]
    assert seen[1].headers["x-ms-error-code"] == "ResourceNotFound"


def test_injected_fault_answers_in_storage_dialect(control, key_service, share_name):
    control.inject(service="files", route="CreateShare", status=503)
    with pytest.raises(HttpResponseError) as excinfo:
        key_service.create_share(share_name())
    assert error_of(excinfo) == (503, "ServerBusy")
    assert "<Code>ServerBusy</Code>" in excinfo.value.response.text()


def test_control_reports_usage_and_path(new_share, control):
    new_share.get_file_client("twelve.bin").upload_file(b"x" * 12)
    described = control.files_share(ACCOUNT, new_share.share_name)
    assert described["usage_bytes"] == 12 and described["quota_gib"] == 1
    assert (Path(described["path"]) / "twelve.bin").read_bytes() == b"x" * 12
    assert new_share.share_name in {s["name"] for s in control.files_shares(ACCOUNT)}


def test_dot_dot_segments_cannot_escape_the_share(new_share, files_url, storage_account, ca_bundle):
    sas = full_account_sas(storage_account)
    url = f"{files_url}/{new_share.share_name}/%2E%2E/%2E%2E/escape?{sas}"
    r = requests.put(url, headers={"x-ms-type": "file", "x-ms-content-length": "1"}, verify=ca_bundle, timeout=10)
    assert (r.status_code, r.headers["x-ms-error-code"]) == (400, "InvalidResourceName")


def test_mounted_view_and_rest_share_the_same_bytes(new_share, control, tmp_path):
    root = Path(control.files_share_path(ACCOUNT, new_share.share_name))
    (root / "from-mount").mkdir()
    (root / "from-mount" / "written.txt").write_bytes(b"written on disk")
    listed = {item["name"]: item for item in new_share.list_directories_and_files("from-mount")}
    assert listed["written.txt"]["size"] == len(b"written on disk")
    file = new_share.get_file_client("from-mount/written.txt")
    assert file.download_file().readall() == b"written on disk"
    (tmp_path / "secret").write_text("outside the share")
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ResourceNotFoundError):
        new_share.get_file_client("link/secret").download_file()


def test_reset_empties_files_root(fresh_emulator):
    account = fresh_emulator.state.config.storage_account(ACCOUNT)
    service = ShareServiceClient(
        f"{fresh_emulator.endpoints['files']}/{ACCOUNT}",
        credential={"account_name": account.name, "account_key": account.key},
        connection_verify=fresh_emulator.endpoints["ca_bundle"],
        retry_total=0,
    )
    service.create_share("doomed").get_file_client("f").upload_file(b"bytes")
    root = fresh_emulator.state.files_root
    assert any(root.rglob("f"))
    fresh_emulator.call(fresh_emulator.state.reset)
    assert list(root.iterdir()) == [] and fresh_emulator.state.data == {}
