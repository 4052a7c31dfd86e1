"""Every ready-to-adapt config in deployments/ starts a real JupyterHub (and proxy) against the emulator."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
import requests
from traitlets.config.loader import PyFileConfigLoader

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config, stable_id
from aml_jupyterhub.emulator.core.server import endpoints_line
from support.arm_fixtures import FAST
from support.hub import DEPLOYMENTS, HubProcess, wait_for
from support.signin import hub_sign_in, login_form

pytestmark = pytest.mark.slow  # each config starts a real hub and proxy

DIRECTORY = default_config()
TENANT = DIRECTORY.tenants[0]
ALICE = DIRECTORY.user("alice@contoso.example")
WORKSPACE = DIRECTORY.workspaces[0]  # ws-research
SP_OID = stable_id("sp", DEMO_CLIENT_ID)
SPARK = {"AML_SPARK_BACKEND": "apache", "AML_SPARK_ENDPOINT": "https://livy.example:8998"}
# The test admin may read /hub/api/info (which classes are active); fast polling for the emulator.
EXTRA_CONFIG = """
c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, {"name": "test-info", "services": ["test-admin"], "scopes": ["read:hub"]}]
c.AMLSpawner.poll_interval_seconds = 0.5
c.AMLSpawner.patience_seconds = 5
c.AMLSpawner.stop_wait_seconds = 30
"""


def emulator_env(emulator, workdir: Path) -> dict[str, str]:
    """What an admin puts in the environment, pointed at the emulator (see deployments/env.template)."""
    owners = workdir / "owners.json"
    owners.write_text(json.dumps({"alice": {"oid": ALICE.oid, "tenant_id": ALICE.tenant_id}}))
    groups = workdir / "groups.json"
    groups.write_text(json.dumps({g.id: g.display_name for g in DIRECTORY.groups}))
    e = emulator.endpoints
    return {
        "AML_SP_TENANT_ID": TENANT.id,
        "AML_SP_CLIENT_ID": DEMO_CLIENT_ID,
        "AML_SP_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "AML_SP_AUTHORITY_HOST": e["authority"],
        "AML_OWNERS_FILE": str(owners),
        "AML_TENANT_ID": TENANT.id,
        "AML_CLIENT_ID": DEMO_CLIENT_ID,
        "AML_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "AML_AUTHORITY_HOST": e["authority"],
        "AML_GRAPH_URL": e["graph"],
        "AML_GROUP_NAMES_FILE": str(groups),
        "AML_ALLOWED_GROUPS": "data-scientists,jupyterhub-admins",
        "AML_ARM_URL": e["arm"],
        "AML_CA_BUNDLE": e["ca_bundle"],
        "AML_HUB_ID": "deploy-" + uuid.uuid4().hex[:6],  # the emulator is shared: names unique to this hub
        "AML_WORKSPACE_SUBSCRIPTION_ID": WORKSPACE.subscription_id,
        "AML_WORKSPACE_RESOURCE_GROUP": WORKSPACE.resource_group,
        "AML_WORKSPACE_NAME": WORKSPACE.name,
        "AML_WORKSPACE_LOCATION": WORKSPACE.location,
        "AML_USERSPACE_ACCOUNT_URL": f"{e['files']}/userfilesdemo",
        "AML_USERSPACE_ACCOUNT_KEY": DIRECTORY.storage_accounts[0].key,
        "AML_INSTANCE_HUB_URL": "https://hub.example/hub/api",
    }


def start_hub(emulator, tmp_path_factory, deployment: str, extra_env: dict[str, str] | None = None) -> HubProcess:
    workdir = tmp_path_factory.mktemp(deployment)
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    hub = HubProcess(workdir, endpoints_file, deployment=deployment, extra_config=EXTRA_CONFIG)
    hub.env.update(emulator_env(emulator, workdir), AML_HUB_BIND_URL=hub.url, AML_HUB_PUBLIC_URL=hub.url, **(extra_env or {}))
    return hub.start()


@pytest.fixture
def fast(control):
    control.update_settings(timings=FAST)
    return control


def info(hub: HubProcess) -> dict:
    r = hub.api("GET", "/info")
    assert r.status_code == 200, r.text
    return r.json()


def server_ready(hub: HubProcess, username: str) -> dict | None:
    server = hub.api("GET", f"/users/{username}").json()["servers"].get("")
    return server if server and server["ready"] else None


def stop(hub: HubProcess, username: str) -> None:
    assert hub.api("DELETE", f"/users/{username}/server").status_code in (202, 204)
    wait_for(lambda: "" not in hub.api("GET", f"/users/{username}").json()["servers"], 60, 0.2, "stop")


def computes_of(control, hub: HubProcess, username: str) -> list[dict]:
    hub_id = hub.env["AML_HUB_ID"]
    return [
        c for c in control.arm_computes()
        if c["tags"].get("aml-jupyterhub-hub") == hub_id and c["tags"].get("aml-jupyterhub-user") == username
    ]


def dummy_login(hub: HubProcess, username: str) -> requests.Response:
    session = requests.Session()
    page = session.get(f"{hub.url}/hub/login", timeout=30)
    form = login_form(page.text)
    data = {**form.inputs, "username": username, form.password_field: "any password"}
    return session.post(f"{hub.url}/hub/login", data=data, allow_redirects=False, timeout=30)


# -- no_auth_spawn_on_aml ------------------------------------------------------------------
@pytest.fixture(scope="module")
def no_auth_hub(emulator, tmp_path_factory):
    hub = start_hub(emulator, tmp_path_factory, "no_auth_spawn_on_aml")
    yield hub
    hub.stop()


def test_no_auth_hub_runs_dummy_sign_in_and_the_aml_spawner(no_auth_hub):
    assert requests.get(f"{no_auth_hub.url}/hub/api/", timeout=10).json()["version"].startswith("6.")
    active = info(no_auth_hub)
    assert active["authenticator"]["class"] == "jupyterhub.auth.DummyAuthenticator"
    assert active["spawner"]["class"] == "aml_jupyterhub.spawner.spawner.AMLSpawner"
    assert dummy_login(no_auth_hub, "alice").status_code == 302  # in the owner map
    refused = dummy_login(no_auth_hub, "mallory")  # not in it
    assert refused.status_code == 403 and "jupyterhub-hub-login" not in refused.cookies


def test_no_auth_spawn_assigns_the_instance_to_the_mapped_identity(no_auth_hub, fast):
    hub = no_auth_hub
    assert hub.api("POST", "/users/alice").status_code in (201, 409)
    since = fast.mark()
    r = hub.api("POST", "/users/alice/server", json={"user_options": {}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: server_ready(hub, "alice"), 60, 0.2, "alice's server")
    [compute] = computes_of(fast, hub, "alice")
    inner = compute["properties"]["properties"]
    assert inner["state"] == "Running"
    assert inner["personalComputeInstanceSettings"]["assignedUser"] == {"objectId": ALICE.oid, "tenantId": ALICE.tenant_id}
    assert inner["createdBy"]["userId"] == SP_OID  # the hub's service principal acted, not alice
    assert set(fast.request_counts(since=since, service="arm")["by_principal"]) == {DEMO_CLIENT_ID}
    stop(hub, "alice")
    assert computes_of(fast, hub, "alice")[0]["properties"]["properties"]["state"] == "Stopped"
    assert DEMO_CLIENT_SECRET not in hub.logs()


def test_no_auth_spawn_of_an_unmapped_user_is_explained(no_auth_hub, fast):
    hub = no_auth_hub
    assert hub.api("POST", "/users/mallory").status_code in (201, 409)
    r = hub.api("POST", "/users/mallory/server", json={"user_options": {}})
    assert r.status_code == 500
    assert "No Microsoft Entra identity is configured for mallory" in r.json()["message"]
    assert computes_of(fast, hub, "mallory") == []


# -- no_auth_spawn_on_aml_with_userspace -------------------------------------------------------
def test_userspace_config_spawns_with_the_users_share(emulator, tmp_path_factory, fast):
    hub = start_hub(emulator, tmp_path_factory, "no_auth_spawn_on_aml_with_userspace")
    try:
        active = info(hub)
        assert active["authenticator"]["class"] == "jupyterhub.auth.DummyAuthenticator"
        assert active["spawner"]["class"] == "aml_jupyterhub.spawner.spawner.AMLSpawner"
        assert 'name="username"' in requests.get(f"{hub.url}/hub/login", timeout=10).text
        assert hub.api("POST", "/users/alice").status_code in (201, 409)
        assert hub.api("POST", "/users/alice/server", json={"user_options": {}}).status_code in (201, 202)
        server = wait_for(lambda: server_ready(hub, "alice"), 60, 0.2, "alice's server")
        share = "u-" + ALICE.oid.replace("-", "")
        assert server["state"]["share"] == share
        assert fast.files_share("userfilesdemo", share)["metadata"]["owner_oid"] == ALICE.oid
        stop(hub, "alice")
        assert DIRECTORY.storage_accounts[0].key not in hub.logs()
    finally:
        hub.stop()
    loaded = load_config("no_auth_spawn_on_aml_with_userspace", hub.env)
    assert loaded.UserSpace.account_url.endswith("/userfilesdemo")
    assert loaded.UserSpace.mount_path == "~/userfiles" and loaded.UserSpace.quota_gib == 100
    assert loaded.AMLSpawner.instance_hub_url == "https://hub.example/hub/api"
    assert loaded.JupyterHub.spawner_class == "aml"  # the base config was loaded first


def load_config(deployment: str, environ: dict[str, str]):
    """The config object a deployment builds, loaded in-process with ``environ``."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in environ.items():
            if key.startswith("AML_") or key == "JUPYTERHUB_CRYPT_KEY":
                mp.setenv(key, value)
        return PyFileConfigLoader("jupyterhub_config.py", str(DEPLOYMENTS / deployment)).load_config()


# -- azure_ad_auth_spawn_on_aml ---------------------------------------------------------------
@pytest.fixture(scope="module")
def azure_ad_hub(emulator, tmp_path_factory):
    hub = start_hub(emulator, tmp_path_factory, "azure_ad_auth_spawn_on_aml", SPARK)
    yield hub
    hub.stop()


def test_azure_ad_hub_signs_in_with_entra_and_spawns_as_the_user(azure_ad_hub, fast, ca_bundle, emulator):
    hub = azure_ad_hub
    active = info(hub)
    assert active["authenticator"]["class"] == "aml_jupyterhub.auth.authenticator.AzureAdDelegatedAuthenticator"
    assert active["spawner"]["class"] == "aml_jupyterhub.spawner.spawner.AMLSpawner"
    assert "Sign in with Microsoft Entra ID" in requests.get(f"{hub.url}/hub/login", timeout=10).text
    start = requests.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=10)
    assert start.headers["Location"].startswith(f"{emulator.endpoints['authority']}/{TENANT.id}/oauth2/v2.0/authorize")

    _, callback = hub_sign_in(hub.url, ALICE.username, ca_bundle)
    assert callback.status_code == 302
    r = hub.api("POST", f"/users/{ALICE.username}/servers/first", json={"user_options": {"profile": "small"}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: (hub.api("GET", f"/users/{ALICE.username}").json()["servers"].get("first") or {}).get("ready"),
             60, 0.2, "alice's named server")
    [compute] = computes_of(fast, hub, ALICE.username)
    assert compute["properties"]["properties"]["createdBy"]["userId"] == ALICE.oid  # as alice herself
    assert compute["tags"]["aml-jupyterhub-server"] == "first"
    assert hub.api("DELETE", f"/users/{ALICE.username}/servers/first").status_code in (202, 204)
    wait_for(lambda: "first" not in hub.api("GET", f"/users/{ALICE.username}").json()["servers"], 60, 0.2, "stop")


def test_azure_ad_config_settings(azure_ad_hub):
    loaded = load_config("azure_ad_auth_spawn_on_aml", azure_ad_hub.env)
    hub = loaded.JupyterHub
    assert hub.cleanup_servers is False and hub.allow_named_servers is True
    assert hub.concurrent_spawn_limit > 0 and hub.active_server_limit > 0
    assert loaded.Spawner.start_timeout >= 600
    assert loaded.AMLSpawner.spark["backend"] == "apache"
    assert loaded.UserSpace.account_key == DIRECTORY.storage_accounts[0].key
    assert "custom:aml-jupyterhub:tokens" in hub.custom_scopes  # configure_token_broker(c)
    assert "ssl_cert" not in hub and "db_url" not in hub  # TLS and Postgres only when their variables are set


# -- env.template ------------------------------------------------------------------------
def test_env_template_lists_every_variable_the_configs_read():
    configs = [p for p in DEPLOYMENTS.glob("*/jupyterhub_config.py") if p.parent.name != "local_emulator"]
    configs.append(DEPLOYMENTS.parent / "aml_jupyterhub" / "settings_env.py")  # helpers the configs call
    read = {name for p in configs for name in re.findall(r'(?:required|optional|names)\("([A-Z_]+)"', p.read_text())}
    read |= {f"AML_SP_{n}" for n in ("TENANT_ID", "CLIENT_ID", "CLIENT_SECRET", "AUTHORITY_HOST", "CA_BUNDLE")}
    read |= {"JUPYTERHUB_CRYPT_KEY"}
    template = (DEPLOYMENTS / "env.template").read_text()
    listed = set(re.findall(r"^([A-Z_]+)=", template, re.M))
    assert len(read) > 30
    assert read <= listed, sorted(read - listed)
    lines = template.splitlines()
    for i, line in enumerate(lines):  # every variable has its one-line meaning just above it
        if re.match(r"^[A-Z_]+=", line):
            assert lines[i - 1].startswith("# "), line
