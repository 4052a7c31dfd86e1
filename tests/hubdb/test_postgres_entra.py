"""A real JupyterHub on a real PostgreSQL, signing in with tokens from the emulated Entra ID.

The server accepts the hub's role only with the token Entra ID last issued to
the hub's service principal, until that token expires (see
``support/postgres_fixtures.py``), and only over TLS (``sslmode=verify-full``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config
from aml_jupyterhub.emulator.core.server import endpoints_line
from aml_jupyterhub.hubdb import EntraTokenProvider, credential_from_env
from support.hub import HubProcess, wait_for
from support.postgres_fixtures import EntraRolePasswords, PostgresServer

ROLE = "aml-jupyterhub"  # named after the service principal, as pgaadauth_create_principal does
PRINCIPAL_OID = default_config().app(DEMO_CLIENT_ID).service_principal_oid
JUPYTERHUB_TABLES = {"alembic_version", "users", "spawners", "servers", "api_tokens", "oauth_clients", "roles"}

pytestmark = pytest.mark.slow


def db_env(emulator, secret: str | None = DEMO_CLIENT_SECRET) -> dict[str, str]:
    """The hub's environment: its sign-in app and the database credential (``AML_HUB_DB_*``)."""
    env = {"AML_CLIENT_ID": DEMO_CLIENT_ID, "AML_CLIENT_SECRET": DEMO_CLIENT_SECRET}
    if secret is not None:
        env |= {
            "AML_HUB_DB_TENANT_ID": "contoso.example",
            "AML_HUB_DB_CLIENT_ID": DEMO_CLIENT_ID,
            "AML_HUB_DB_CLIENT_SECRET": secret,
            "AML_HUB_DB_AUTHORITY_HOST": emulator.endpoints["authority"],
            "AML_HUB_DB_CA_BUNDLE": emulator.endpoints["ca_bundle"],
        }
    return env


def entra_config(postgres: PostgresServer, dbname: str, **settings: object) -> str:
    """What a deployment adds to ``jupyterhub_config.py`` (docs/hub-database.md)."""
    url = f"postgresql+psycopg://{ROLE}@{postgres.host}:{postgres.port}/{dbname}"
    settings = {"sslmode": "verify-full", "sslrootcert": postgres.ca_bundle, **settings}
    args = "".join(f", {key}={value!r}" for key, value in settings.items())
    return f"from aml_jupyterhub.hubdb import configure_entra_db\nconfigure_entra_db(c, {url!r}{args})\n"


def make_hub(workdir: Path, emulator, extra_config: str, env: dict[str, str]) -> HubProcess:
    endpoints_file = workdir / "endpoints.json"
    workdir.mkdir(parents=True, exist_ok=True)
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    return HubProcess(workdir, endpoints_file, extra_config=extra_config, env=env)


def assert_no_token_in(log: str, tokens: list[str]) -> None:
    """Neither the claims nor the signature of any token (the header is the same for all)."""
    assert tokens
    for token in tokens:
        _header, payload, signature = token.split(".")
        assert payload not in log and signature not in log


def refused(postgres: PostgresServer, token: str) -> bool:
    try:
        postgres.connect(ROLE, token).close()
    except psycopg.OperationalError as e:
        assert "password authentication failed" in str(e)
        return True
    return False


@pytest.fixture(scope="module")
def hub_role(postgres: PostgresServer, entra_passwords: EntraRolePasswords) -> str:
    """The Entra admin's setup: a role for the hub's service principal (no password of its own)."""
    postgres.create_role(ROLE, entra=True)
    entra_passwords.map(PRINCIPAL_OID, ROLE)
    return ROLE


@dataclass
class EntraHub:
    hub: HubProcess
    dbname: str
    startup_tokens: list[str]  # what Entra ID issued to the role while the hub started


@pytest.fixture(scope="module")
def entra_hub(emulator, postgres, entra_passwords, hub_role, tmp_path_factory) -> Iterator[EntraHub]:
    dbname = postgres.create_database(owner=hub_role)
    # Servers keep running while the hub restarts; --allow-root: the suite may run as root.
    extra = entra_config(postgres, dbname) + 'c.JupyterHub.cleanup_servers = False\nc.Spawner.args = ["--allow-root"]\n'
    hub = make_hub(tmp_path_factory.mktemp("entra-hub"), emulator, extra, db_env(emulator))
    before = len(entra_passwords.tokens(ROLE))
    hub.start()
    yield EntraHub(hub, dbname, entra_passwords.tokens(ROLE)[before:])
    hub.stop()


def test_hub_starts_on_postgres_with_one_token_for_all_its_connections(entra_hub, postgres):
    hub = entra_hub.hub
    assert JUPYTERHUB_TABLES <= postgres.tables(entra_hub.dbname)
    owner = postgres.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'users'", dbname=entra_hub.dbname)
    assert owner == [(ROLE,)]
    sessions = postgres.authorized(ROLE, entra_hub.dbname)
    # The schema stamp (alembic's own engine) and the hub's pool both connected, over TLS...
    assert len(sessions) >= 2 and all("SSL enabled" in line for line in sessions)
    # ...with the one token the process fetched.
    assert len(entra_hub.startup_tokens) == 1
    assert "signs in with Entra ID tokens from ClientSecretCredential (sslmode=verify-full)" in hub.logs()


def test_users_and_servers_persist_across_restart(entra_hub, entra_passwords):
    hub, name = entra_hub.hub, "persist-user"
    assert hub.api("POST", f"/users/{name}").status_code == 201
    assert hub.api("POST", f"/users/{name}/server").status_code in (201, 202)

    def server():
        return hub.api("GET", f"/users/{name}").json()["servers"].get("")

    before = wait_for(lambda: (s := server()) and s["ready"] and s, 60, message="the server to be ready")
    tokens = len(entra_passwords.tokens(ROLE))
    hub.restart()
    try:
        after = server()
        assert after is not None and after["ready"], after
        assert (after["url"], after["started"]) == (before["url"], before["started"])
        assert len(entra_passwords.tokens(ROLE)) == tokens + 1  # a new process, a new token
    finally:
        hub.api("DELETE", f"/users/{name}/server")
        wait_for(lambda: server() is None, 30, message="the server to stop")


def test_token_never_appears_in_the_hub_log(entra_hub, entra_passwords):
    tokens = entra_passwords.tokens(ROLE)
    assert entra_hub.startup_tokens and set(entra_hub.startup_tokens) <= set(tokens)
    log = entra_hub.hub.logs()
    assert_no_token_in(log, tokens)
    assert DEMO_CLIENT_SECRET not in log


def test_new_connection_after_rotation_uses_the_new_token(emulator, control, postgres, entra_passwords, hub_role, tmp_path):
    # Tokens shorter-lived than the refresh margin: every new connection needs the next one.
    control.update_settings(access_token_lifetime=240)
    dbname = postgres.create_database(owner=hub_role)
    hub = make_hub(tmp_path, emulator, entra_config(postgres, dbname), db_env(emulator)).start()
    try:
        old = entra_passwords.tokens(ROLE)[-1]
        offset = postgres.log_offset()
        assert postgres.terminate(ROLE, dbname) >= 1  # e.g. a failover: the hub must reconnect
        # JupyterHub fails the request that meets the dead session (403), then reconnects.
        assert wait_for(lambda: hub.api("POST", "/users/after-rotation").status_code == 201, 30, message="a write")
        new = entra_passwords.tokens(ROLE)[-1]
        assert new != old
        assert postgres.authorized(ROLE, dbname, since=offset)  # the hub opened a new session...
        assert refused(postgres, old)  # ...which only the new token could have
        assert not refused(postgres, new)
        assert hub.api("GET", "/users/after-rotation").status_code == 200
        assert_no_token_in(hub.logs(), [old, new])
    finally:
        hub.stop()


def test_expired_token_is_refused_by_the_server(emulator, control, postgres, entra_passwords, hub_role):
    control.update_settings(access_token_lifetime=3)
    offset = postgres.log_offset()
    provider = EntraTokenProvider(credential_from_env(environ=db_env(emulator)))
    token = provider.token()
    assert not refused(postgres, token)  # valid now...
    assert wait_for(lambda: refused(postgres, token), 20, message="the token to expire")  # ...refused once expired
    assert "has an expired password" in postgres.log(offset)


@pytest.mark.parametrize(
    ("secret", "messages"),
    [
        ("wrong-secret", ["AADSTS7000215: Invalid client secret provided", "come from the AML_HUB_DB_* environment"]),
        (None, ["No Entra ID credential for the hub database: set AML_HUB_DB_TENANT_ID"]),
    ],
    ids=["wrong-secret", "no-credential"],
)
def test_bad_credential_fails_fast_with_a_clear_message(emulator, postgres, hub_role, tmp_path, secret, messages):
    dbname = postgres.create_database(owner=hub_role)
    hub = make_hub(tmp_path, emulator, entra_config(postgres, dbname), db_env(emulator, secret))
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="JupyterHub exited with 1"):
        hub.start(timeout=30)
    assert time.monotonic() - started < 20
    log = hub.logs()
    assert all(message in log for message in messages)
    assert "wrong-secret" not in log
    assert not postgres.tables(dbname)


def test_plain_password_database_url_is_untouched(emulator, postgres, hub_role, tmp_path):
    postgres.create_role("plain-hub", password="plain-password")
    dbname = postgres.create_database(owner="plain-hub")
    url = f"postgresql+psycopg://plain-hub:plain-password@{postgres.host}:{postgres.port}/{dbname}"
    hub = make_hub(tmp_path, emulator, f"c.JupyterHub.db_url = {url!r}\n", db_env(emulator, secret=None)).start()
    try:
        assert hub.api("POST", "/users/plain-user").status_code == 201
        assert JUPYTERHUB_TABLES <= postgres.tables(dbname)
        assert postgres.authorized("plain-hub", dbname)
        assert "Hub database: role" not in hub.logs()  # no Entra sign-in was set up
    finally:
        hub.stop()
