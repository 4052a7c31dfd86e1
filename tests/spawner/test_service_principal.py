"""The service-principal hooks for AMLSpawner: credential from the environment, owner map."""

from __future__ import annotations

import json
from types import SimpleNamespace

import jwt
import pytest
from azure.core.credentials import AccessToken

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config, stable_id
from aml_jupyterhub.spawner import Owner
from aml_jupyterhub.spawner.service_principal import (
    ARM_SCOPE,
    FixedScopeCredential,
    ServicePrincipalConfigError,
    UnmappedUser,
    arm_credential_from_env,
    load_owner_map,
    owners_from_file,
    service_principal_credential,
)

SP_ENV = {"AML_SP_TENANT_ID": "t", "AML_SP_CLIENT_ID": "c", "AML_SP_CLIENT_SECRET": "s"}


def spawner_of(name: str) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(name=name))


def test_owner_map_file_maps_hub_users_to_entra_identities(tmp_path):
    path = tmp_path / "owners.json"
    path.write_text(json.dumps({"alice": {"oid": "o-1", "tenant_id": "t-1"}}))
    assert load_owner_map(path) == {"alice": Owner("alice", "o-1", "t-1")}


async def test_owner_hook_finds_mapped_users_and_explains_unmapped_ones(tmp_path):
    path = tmp_path / "owners.json"
    path.write_text(json.dumps({"alice": {"oid": "o-1", "tenant_id": "t-1"}}))
    owner = owners_from_file(path)
    assert await owner(spawner_of("alice")) == Owner("alice", "o-1", "t-1")
    with pytest.raises(UnmappedUser) as e:
        await owner(spawner_of("bob"))
    assert "No Microsoft Entra identity is configured for bob" in e.value.jupyterhub_message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Cannot read the owner map"),
        ("{not json", "is not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"alice": "o-1"}', "'alice' needs"),
        ('{"alice": {"oid": "o-1"}}', "'alice' needs"),
    ],
)
def test_bad_owner_maps_fail_when_the_config_loads(tmp_path, content, message):
    path = tmp_path / "owners.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ServicePrincipalConfigError, match=message):
        load_owner_map(path)


def test_missing_service_principal_variables_are_named():
    with pytest.raises(ServicePrincipalConfigError) as e:
        arm_credential_from_env(environ={"AML_SP_TENANT_ID": "t"})
    assert "AML_SP_CLIENT_ID" in str(e.value) and "AML_SP_CLIENT_SECRET" in str(e.value)
    assert "AML_SP_TENANT_ID," not in str(e.value)


async def test_one_credential_is_shared_by_every_user():
    hook = arm_credential_from_env(environ=SP_ENV)
    first = hook(None, SimpleNamespace(name="alice"))
    assert hook(None, SimpleNamespace(name="bob")) is first
    assert isinstance(first, FixedScopeCredential) and first.scope == ARM_SCOPE
    await first.close()


async def test_fixed_scope_credential_ignores_the_sdks_scope():
    asked = []

    class Inner:
        async def get_token(self, *scopes, **kwargs):
            asked.append(scopes)
            return AccessToken("t", 1)

    credential = FixedScopeCredential(Inner())
    await credential.get_token("https://127.0.0.1:8443/.default")
    assert asked == [(ARM_SCOPE,)]


async def test_service_principal_gets_an_app_token_for_arm_from_the_emulator(emulator):
    e = emulator.endpoints
    tenant = default_config().tenants[0]
    credential = service_principal_credential(
        tenant.id, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, authority_host=e["authority"], ca_bundle=e["ca_bundle"]
    )
    try:
        token = await credential.get_token(e["arm"] + "/.default")  # what azure-ai-ml asks for
    finally:
        await credential.close()
    claims = jwt.decode(token.token, options={"verify_signature": False})
    assert claims["aud"].rstrip("/") == "https://management.azure.com"
    assert claims["oid"] == stable_id("sp", DEMO_CLIENT_ID) and "scp" not in claims  # app-only
