"""A real PostgreSQL server for the tests, and Azure's part of Entra ID sign-in to it.

:class:`PostgresServer` runs Debian's PostgreSQL (``scripts/debian-packages.txt``)
as a private cluster in a temporary directory: TCP on 127.0.0.1 only, TLS on
with a certificate from a test CA, SCRAM password authentication, and every
connection logged. Run as root, the server runs as the ``postgres`` OS user
(PostgreSQL refuses to run as root); otherwise as the current user.

:class:`EntraRolePasswords` stands in for Azure Database for PostgreSQL's token
check: each access token the emulated Entra ID issues for the PostgreSQL
resource to a mapped principal becomes that role's password, ``VALID UNTIL``
the token expires, before the token leaves the emulator. So the server itself
accepts the current token and refuses expired and superseded ones.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from aml_jupyterhub.emulator.core.tokens import RESOURCES_BY_KEY
from aml_jupyterhub.emulator.core.tls import ensure_tls
from support.hub import free_port

ENTRA_GROUP = "entra_principals"  # roles in it must use TLS (pg_hba), like Azure's Entra roles
SUPERUSER = "postgres"
PG_HBA = f"""\
# TYPE    DATABASE USER               ADDRESS        METHOD
hostssl   all      +{ENTRA_GROUP}    127.0.0.1/32   scram-sha-256
host      all      +{ENTRA_GROUP}    127.0.0.1/32   reject
host      all      all                127.0.0.1/32   scram-sha-256
"""


def find_bindir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``$AML_TEST_PG_BINDIR``, Debian's newest, or ``$PATH``."""
    candidates = [os.environ.get("AML_TEST_PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True)
    candidates.append(str(Path(shutil.which("initdb") or "/nonexistent").parent))
    for directory in filter(None, candidates):
        if (Path(directory) / "initdb").is_file():
            return Path(directory)
    pytest.fail("PostgreSQL server binaries not found: run `make system-deps` (Debian package postgresql)", pytrace=False)


class PostgresServer:
    """A private PostgreSQL cluster on 127.0.0.1; :meth:`admin` connects as its superuser."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log_path = root / "server.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.superuser_password = secrets.token_urlsafe(16)
        self.tls = ensure_tls(root / "tls")
        self.ca_bundle = str(self.tls.ca_bundle)
        # PostgreSQL will not run as root: run it as the `postgres` OS user then.
        self.os_user = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())

    # -- lifecycle -------------------------------------------------------------------
    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", self.os_user.pw_name, "--"] if os.geteuid() == 0 else []
        result = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}{log}")

    def _give(self, path: Path, mode: int) -> None:
        os.chown(path, self.os_user.pw_uid, self.os_user.pw_gid)
        path.chmod(mode)

    def start(self) -> PostgresServer:
        self._give(self.root, 0o700)
        pwfile = self.root / "superuser-password"
        pwfile.write_text(self.superuser_password)
        self._give(pwfile, 0o600)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
            "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        for name, source in (("server.crt", self.tls.server_chain), ("server.key", self.tls.server_key)):
            shutil.copy(source, self.data / name)
            self._give(self.data / name, 0o600)
        (self.data / "pg_hba.conf").write_text(PG_HBA)
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.host}'\nport = {self.port}\nunix_socket_directories = ''\n"
                "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                "password_encryption = 'scram-sha-256'\nlog_connections = on\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n"
            )
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", "60", "start")
        self.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(ENTRA_GROUP)))
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    # -- administration (what the Azure portal / the Entra admin would do) -------------
    def connect(self, user: str, password: str, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        params = {"sslmode": "verify-full", "sslrootcert": self.ca_bundle, "connect_timeout": 10, **kwargs}
        return psycopg.connect(host=self.host, port=self.port, user=user, password=password, dbname=dbname, **params)

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        return self.connect(SUPERUSER, self.superuser_password, dbname, autocommit=True)

    def execute(self, statement: sql.Composable | str, *, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        with self.admin(dbname) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def create_role(self, name: str, password: str | None = None, *, entra: bool = False) -> None:
        """A login role; ``entra=True`` puts it in the group pg_hba holds to TLS (no password yet)."""
        self.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
        if password is not None:
            self.set_password(name, password)
        if entra:
            self.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(ENTRA_GROUP), sql.Identifier(name)))

    def set_password(self, role: str, password: str, valid_until: float | None = None) -> None:
        until = datetime.fromtimestamp(valid_until, timezone.utc).isoformat() if valid_until else "infinity"
        statement = sql.SQL("ALTER ROLE {} PASSWORD {} VALID UNTIL {}")
        self.execute(statement.format(sql.Identifier(role), sql.Literal(password), sql.Literal(until)))

    def create_database(self, owner: str) -> str:
        name = f"hub_{secrets.token_hex(4)}"
        self.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
        return name

    def tables(self, dbname: str) -> set[str]:
        rows = self.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname=dbname)
        return {row[0] for row in rows}

    def terminate(self, role: str, dbname: str) -> int:
        """Drop every session of ``role`` on ``dbname`` (as a failover would); returns how many."""
        query = sql.SQL(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = {} AND datname = {}"
        ).format(sql.Literal(role), sql.Literal(dbname))
        return len(self.execute(query))

    def log(self, since: int = 0) -> str:
        """The server log from byte ``since`` (see :meth:`log_offset`)."""
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def authorized(self, role: str, dbname: str, since: int = 0) -> list[str]:
        """Server log lines of connections ``role`` opened on ``dbname`` (after byte ``since``)."""
        needle = f"connection authorized: user={role} database={dbname}"
        return [line for line in self.log(since).splitlines() if needle in line]


@dataclass
class IssuedToken:
    role: str
    token: str
    expires_at: float  # on the server's (real) clock


class EntraRolePasswords:
    """Azure's token check, emulated by PostgreSQL itself (see the module doc).

    Real Azure accepts any unexpired token of the role's principal; here only the
    newest, which is stricter and enough: the hub uses one token at a time.
    """

    def __init__(self, server: PostgresServer, clock_offset: Callable[[], float]) -> None:
        self.server = server
        self.clock_offset = clock_offset
        self.roles: dict[str, str] = {}  # principal object id -> role
        self.issued: list[IssuedToken] = []

    def map(self, principal_oid: str, role: str) -> None:
        self.roles[principal_oid] = role

    def on_token(self, claims: dict[str, Any], token: str) -> None:
        """An emulator token listener: a PostgreSQL token of a mapped principal becomes its role's password."""
        role = self.roles.get(claims.get("oid", ""))
        if role and claims.get("aud") == RESOURCES_BY_KEY["postgres"].audience:
            expires_at = claims["exp"] - self.clock_offset()
            self.server.set_password(role, token, valid_until=expires_at)
            self.issued.append(IssuedToken(role, token, expires_at))

    def tokens(self, role: str) -> list[str]:
        return [t.token for t in self.issued if t.role == role]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One private PostgreSQL server for the session; tests use their own roles and databases."""
    root = Path(tempfile.mkdtemp(prefix="aml-pg-"))  # under /tmp: pytest's tmp dirs are root-only
    server = PostgresServer(find_bindir(), root)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def entra_passwords(postgres: PostgresServer, emulator: Any) -> Iterator[EntraRolePasswords]:
    """Tokens the emulator mints for mapped principals become their roles' passwords.

    Session-wide, because a module's hub fetches its token when it starts; it
    acts only on principals a test mapped with :meth:`EntraRolePasswords.map`.
    """
    passwords = EntraRolePasswords(postgres, lambda: emulator.state.clock_offset)
    emulator.state.token_listeners.append(passwords.on_token)
    try:
        yield passwords
    finally:
        emulator.state.token_listeners.remove(passwords.on_token)
