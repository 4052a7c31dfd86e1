"""The user space's pure parts: share names, the startup script, the share-scoped SAS."""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import parse_qs

import pytest

from aml_jupyterhub.spawner.profiles import parse_profiles, parse_workspaces
from aml_jupyterhub.spawner.specs import Owner, compute_instance_spec
from aml_jupyterhub.spawner.startup import InlineScript, startup_script
from aml_jupyterhub.userspace import UserSpace, UserSpaceError, policy_id, renewal_due, share_access, share_name
from aml_jupyterhub.userspace.naming import is_valid_share_name

KEY = base64.b64encode(b"k" * 64).decode()
OID = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"


def test_share_name_from_object_id_is_stable_and_free_of_personal_data():
    name = share_name("Alice.Smith@contoso.example", OID)
    assert name == "u-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    assert share_name("renamed@contoso.example", OID) == name  # a rename keeps the files
    assert "alice" not in name and is_valid_share_name(name)


@pytest.mark.parametrize(
    "names",
    [
        ["alice", "Alice", "ALICE", "alice.", ".alice"],
        ["a" * 200, "a" * 201],
        ["ünïcödé", "unicode", "üñí", "用户", "ユーザー"],
        ["a.b", "a-b", "a_b", "a b", "a--b"],
        ["-", "--", "..", "x"],
    ],
)
def test_share_names_without_object_id_are_valid_and_distinct(names):
    shares = [share_name(n) for n in names]
    assert all(is_valid_share_name(s) for s in shares), shares
    assert len(set(shares)) == len(names), shares


def test_invalid_object_id_falls_back_to_the_username():
    assert share_name("bob", "not-a-guid") == share_name("bob")


def test_startup_script_names_the_hub_and_holds_no_secret():
    script = startup_script("https://hub.example.org/hub/api", "api://app-id", "pip install aml-jupyterhub", "/opt/py/bin/python")
    assert script.startswith("#!/bin/bash\n") and "set -euo pipefail" in script
    assert "pip install aml-jupyterhub" in script
    assert "exec /opt/py/bin/python -m aml_jupyterhub.instance start --hub-url https://hub.example.org/hub/api --audience api://app-id" in script


def test_startup_script_quotes_what_it_is_given():
    script = startup_script("https://hub/x;rm -rf /", "api://a b")
    assert "'https://hub/x;rm -rf /'" in script and "'api://a b'" in script


def test_inline_script_reaches_azure_inline_with_the_instance_identity():
    workspaces = parse_workspaces({"w": {"subscription_id": "s", "resource_group": "r", "workspace_name": "w"}})
    [profile] = parse_profiles([{"key": "p", "display_name": "P", "workspace": "w", "vm_size": "Standard_DS3_v2"}], workspaces)
    script = startup_script("https://hub/hub/api", "api://x")
    body = compute_instance_spec("jhname", profile, Owner("a", "oid", "tid"), {}, InlineScript(script, 20))._to_rest_object().as_dict()
    reference = body["properties"]["properties"]["setupScripts"]["scripts"]["startupScript"]
    assert reference["scriptSource"] == "inline" and reference["timeout"] == "20m"
    assert base64.b64decode(reference["scriptData"]).decode() == script
    assert body["identity"] == {"type": "SystemAssigned"}


def space(**kw) -> UserSpace:
    return UserSpace(account_url="https://userfiles.file.core.windows.net", account_key=KEY, **kw)


def test_sas_is_bound_to_the_servers_policy_scoped_to_one_share_https_only():
    expiry = dt.datetime(2026, 11, 29, 16, 0, tzinfo=dt.timezone.utc)
    access = share_access(space(), "u-abc", policy_id("jhalice-1"), expiry)
    params = {k: v[0] for k, v in parse_qs(access.sas).items()}
    assert params["sr"] == "s" and params["spr"] == "https" and params["si"] == "srv-jhalice-1"
    assert "sp" not in params and "se" not in params and "st" not in params  # the policy holds them: extendable, revocable
    assert "ss" not in params and "srt" not in params  # not an account SAS
    assert access.expires_on == int(expiry.timestamp()) and access.share_folder == "files"
    assert access.share_url == "https://userfiles.file.core.windows.net/u-abc" and access.mode == "sas"


def test_policy_ids_fit_azures_limit_and_renewal_starts_at_half_life():
    assert policy_id("jh-" + "x" * 100) == "srv-jh-" + "x" * 57 and len(policy_id("a" * 200)) == 64
    lifetime = space().sas_lifetime_minutes * 60
    assert not renewal_due(1000 + lifetime * 0.6, space(), 1000) and renewal_due(1000 + lifetime * 0.4, space(), 1000)
    assert renewal_due(None, space(), 1000)


def test_rbac_mode_sends_no_credential():
    access = share_access(space(instance_credential="rbac"), "u-abc", "srv-x", dt.datetime.now(dt.timezone.utc))
    assert access.mode == "rbac" and access.sas is None


def test_missing_key_is_a_clear_error():
    with pytest.raises(UserSpaceError, match="account_key"):
        share_access(UserSpace(account_url="https://a.file.core.windows.net"), "u-abc", "srv-x", dt.datetime.now(dt.timezone.utc))


@pytest.mark.parametrize(
    "url, account",
    [("https://acct.file.core.windows.net", "acct"), ("https://127.0.0.1:8444/userfilesdemo", "userfilesdemo"), ("https://localhost:1/x/", "x")],
)
def test_account_name_from_url(url, account):
    assert UserSpace(account_url=url).account_name == account
