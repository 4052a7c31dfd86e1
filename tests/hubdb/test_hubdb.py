"""The pieces of Entra sign-in to the hub database, without a hub: token cache, credential, connect hook."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from traitlets.config import Config

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config
from aml_jupyterhub.hubdb import (
    POSTGRES_SCOPE,
    EntraTokenProvider,
    HubDatabaseConfigError,
    HubDatabaseTokenError,
    configure_entra_db,
    credential_from_env,
    stop_supplying,
    supply_tokens,
)
from aml_jupyterhub.hubdb import credentials as credentials_module
from aml_jupyterhub.hubdb.connect import provider_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeCredential:
    """Hands out ``token-1``, ``token-2``... (or always ``fixed``) valid for ``lifetime`` s, or raises ``failure``."""

    def __init__(self, clock: Clock, lifetime: int = 3600, latency: float = 0.0, fixed: str | None = None) -> None:
        self.clock, self.lifetime, self.latency, self.fixed = clock, lifetime, latency, fixed
        self.failure: Exception | None = None
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        self.scopes.append(scopes)
        time.sleep(self.latency)  # the network round trip
        if self.failure:
            raise self.failure
        return AccessToken(self.fixed or f"token-{len(self.scopes)}", int(self.clock() + self.lifetime))


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_one_token_until_the_refresh_margin(clock):
    credential = FakeCredential(clock)
    provider = EntraTokenProvider(credential, refresh_minutes_before_expiry=5, clock=clock)
    assert provider.token() == "token-1"
    clock.now += 3600 - 301
    assert provider.token() == "token-1"  # still more than 5 minutes left
    clock.now += 2
    assert provider.token() == "token-2"  # within 5 minutes of expiry: the next one
    assert credential.scopes == [(POSTGRES_SCOPE,), (POSTGRES_SCOPE,)]
    assert "token-" not in repr(provider)


def test_concurrent_connections_share_one_fetch(clock):
    credential = FakeCredential(clock, latency=0.2)
    provider = EntraTokenProvider(credential, clock=clock)
    barrier = threading.Barrier(8)
    results: list[str] = []

    def connect() -> None:
        barrier.wait()
        results.append(provider.token())

    threads = [threading.Thread(target=connect) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == ["token-1"] * 8
    assert len(credential.scopes) == 1


def test_failed_refresh_keeps_the_valid_token_then_fails_clearly(clock):
    credential = FakeCredential(clock, lifetime=600)
    provider = EntraTokenProvider(credential, clock=clock)
    provider.token()
    reason = "AADSTS7000222: The provided client secret keys are expired"
    credential.failure = ClientAuthenticationError(f"Authentication failed: {reason}.")
    clock.now += 400  # inside the margin, not expired
    assert provider.token() == "token-1"
    clock.now += 200  # expired
    with pytest.raises(HubDatabaseTokenError, match=f"{reason}. Check the tenant id"):
        provider.token()


def test_token_failure_names_what_to_check_not_the_secret(emulator):
    secret = "not-the-secret-value-7"
    credential = ClientSecretCredential(
        "contoso.example", DEMO_CLIENT_ID, secret,
        authority=emulator.endpoints["authority"], disable_instance_discovery=True,
        connection_verify=emulator.endpoints["ca_bundle"],
    )  # fmt: skip
    with pytest.raises(HubDatabaseTokenError) as caught:
        EntraTokenProvider(credential).token()
    message = str(caught.value)
    assert "AADSTS7000215" in message and "client secret of the service principal" in message
    assert "Trace ID" in message  # Entra's ids, for a support request
    assert secret not in message
    assert caught.value.__cause__ is None  # no 60-line azure-identity traceback underneath


def emulator_env(emulator, **extra: str) -> dict[str, str]:
    return {
        "AML_HUB_DB_TENANT_ID": "contoso.example",
        "AML_HUB_DB_CLIENT_ID": DEMO_CLIENT_ID,
        "AML_HUB_DB_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "AML_HUB_DB_AUTHORITY_HOST": emulator.endpoints["authority"],
        "AML_HUB_DB_CA_BUNDLE": emulator.endpoints["ca_bundle"],
        **extra,
    }


def test_service_principal_from_env_gets_a_postgres_token(emulator):
    token = credential_from_env(environ=emulator_env(emulator)).get_token(POSTGRES_SCOPE).token
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == "https://ossrdbms-aad.database.windows.net"
    assert claims["oid"] == default_config().app(DEMO_CLIENT_ID).service_principal_oid


@pytest.mark.parametrize(("value", "client_id"), [("system", None), ("SYSTEM", None), ("1234-abcd", "1234-abcd")])
def test_managed_identity_from_env(monkeypatch, value, client_id):
    built: list[dict[str, object]] = []
    monkeypatch.setattr(credentials_module, "ManagedIdentityCredential", lambda **kw: built.append(kw) or "mi")
    assert credential_from_env(environ={"AML_HUB_DB_MANAGED_IDENTITY": value}) == "mi"
    assert built == [{"client_id": client_id}]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "set AML_HUB_DB_TENANT_ID, AML_HUB_DB_CLIENT_ID and AML_HUB_DB_CLIENT_SECRET"),
        ({"AML_HUB_DB_CLIENT_SECRET": "s"}, "needs AML_HUB_DB_TENANT_ID and AML_HUB_DB_CLIENT_ID"),
        ({"AML_HUB_DB_CLIENT_SECRET": "s", "AML_HUB_DB_MANAGED_IDENTITY": "system"}, "not both"),
    ],
)
def test_incomplete_env_is_a_clear_config_error(environ, message):
    with pytest.raises(HubDatabaseConfigError, match=message):
        credential_from_env(environ=environ)


# -- the connect hook, against the real server -------------------------------------------


@pytest.fixture(scope="module")
def roles(postgres) -> dict[str, str]:
    """An Entra-style role whose password the test controls, and a plain password role."""
    postgres.create_role("hook-entra", password="current-token", entra=True)
    postgres.create_role("hook-plain", password="plain-password")
    return {"entra": "hook-entra", "plain": "hook-plain"}


def server_url(postgres, role: str, password: str = "") -> str:
    secret = f":{password}" if password else ""
    return f"postgresql+psycopg://{role}{secret}@{postgres.host}:{postgres.port}/postgres"


@pytest.fixture
def hooked(postgres, roles, clock) -> Iterator[tuple[str, EntraTokenProvider]]:
    """Tokens for ``hook-entra`` come from a credential whose every token is ``current-token``."""
    url = f"{server_url(postgres, roles['entra'])}?sslmode=verify-full&sslrootcert={postgres.ca_bundle}"
    provider = EntraTokenProvider(FakeCredential(clock, fixed="current-token"), clock=clock)
    supply_tokens(url, provider)
    yield url, provider
    stop_supplying(url)


def current_user(url: str) -> str:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT current_user")).scalar_one()
    finally:
        engine.dispose()


def test_every_engine_for_the_role_gets_the_token(hooked, roles):
    url, provider = hooked
    assert current_user(url) == roles["entra"]  # e.g. JupyterHub's engine
    assert current_user(url) == roles["entra"]  # e.g. alembic's, built from the URL alone
    assert provider.fetches == 1  # one cached token for both


def test_other_roles_and_explicit_passwords_are_left_alone(hooked, postgres, roles):
    assert current_user(server_url(postgres, roles["plain"], "plain-password")) == roles["plain"]
    with pytest.raises(OperationalError, match="no password supplied"):
        current_user(server_url(postgres, roles["plain"]))  # same server, another role: no token
    wrong = hooked[0].replace(f"{roles['entra']}@", f"{roles['entra']}:wrong@")
    with pytest.raises(OperationalError, match="password authentication failed"):
        current_user(wrong)  # a password in the URL wins over the hook


def test_stop_supplying(hooked):
    url, _ = hooked
    stop_supplying(url)
    with pytest.raises(OperationalError, match="no password supplied"):
        current_user(url)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///jupyterhub.sqlite", "for PostgreSQL"),
        ("postgresql://role:pw@db.example/hub", "must not contain a password"),
        ("postgresql://db.example/hub", "needs the server host and the Entra role"),
    ],
)
def test_urls_that_cannot_use_entra_are_refused(url, message, clock):
    with pytest.raises(ValueError, match=message):
        supply_tokens(url, EntraTokenProvider(FakeCredential(clock)))


def test_configure_entra_db_reads_traits_and_sets_the_url(clock):
    c = Config()
    c.EntraDatabaseAuth.sslmode = "verify-full"
    c.EntraDatabaseAuth.sslrootcert = "system"
    url = "postgresql+psycopg://aml-jupyterhub@db.example:6432/jupyterhub"
    auth = configure_entra_db(c, url, FakeCredential(clock), refresh_minutes_before_expiry=2)
    try:
        assert c.JupyterHub.db_url == f"{url}?sslmode=verify-full&sslrootcert=system"
        provider = provider_for(url)
        assert provider is not None and provider.margin_seconds == 120
        assert (auth.sslmode, auth.refresh_minutes_before_expiry) == ("verify-full", 2)
    finally:
        stop_supplying(url)
    with pytest.raises(TypeError, match="unknown settings: ssl_mode"):
        configure_entra_db(c, url, FakeCredential(clock), ssl_mode="require")
