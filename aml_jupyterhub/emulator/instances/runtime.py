"""The emulated compute-instance runtime: what Azure does inside a running instance.

When an emulated instance is about to reach Running, the state machine asks
this runtime to bring it up, and Running follows only once it is up:

1. its disk: sandbox directories kept while the instance exists (as its OS
   disk is) and removed when it is deleted: the notebook user's home, root's
   home and the temporary disk;
2. its machine (:mod:`.sandbox`): a mount namespace where those directories
   are ``/home/azureuser``, ``/root`` and ``/mnt``;
3. the instance's startup script (``setupScripts.scripts.startupScript``,
   inline, base64) runs there as **root** with the environment an Azure ML
   instance gives (:meth:`InstanceRuntime.environment`); a non-zero exit
   fails the start with the script's output;
4. a real Jupyter server (JupyterLab) runs as the notebook user ``azureuser``
   and serves HTTPS on a port of its own, the stand-in for
   ``https://<name>.<region>.instances.azureml.ms``: that URL is what the
   instance's ``applications`` advertise.

Leaving Running stops the machine as a VM's shutdown does: every process the
startup script left behind (e.g. the user space's ``rclone mount``) gets
SIGTERM, then SIGKILL after a grace period; then the Jupyter server stops and
the namespace, with its mounts, goes. The managed-identity endpoint is the
emulator's ``instances`` service (:mod:`.routes`); the Azure ML gateway's
sign-in is the Jupyter server's identity provider (:mod:`.gateway`); the user
space is a real FUSE mount of the emulated Files service, made on the
instance as on Azure. Which Azure rule each part holds, and its source:
docs/emulator-fidelity.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..core.config import GATEWAY_CLIENT_ID, stable_id
from ..core.instance_host import (
    SERVING,
    StartupFailed,
    application_endpoints,
    inner,
    startup_script,
)
from ..core.tls import TLSFiles
from . import sandbox

log = logging.getLogger("aml_jupyterhub.emulator.instances")

SCRIPT_TIMEOUT = re.compile(r"^(\d+)([smh]?)$")
SERVER_READY_SECONDS = 60.0
#: How long a stopping machine's processes get between SIGTERM and SIGKILL (a VM gives more).
STOP_GRACE_SECONDS = 10.0
#: Environment variables a process on an instance inherits from the machine (nothing else leaks in).
INHERITED = ("PATH", "LANG", "LC_ALL", "JAVA_HOME", "TZ", "VIRTUAL_ENV", "PYTHONPATH")
#: The emulator's own files on an instance's temporary disk (CA bundle, the gateway's certificate).
EMULATOR_DIR = "x-emulator"
APPLICATION_ACCESS = "workspaces/computes/applicationaccess/action"  # what the gateway checks
ARM_ID = re.compile(r"/resourceGroups/([^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/([^/]+)/", re.I)


@dataclass
class Instance:
    """One emulated instance's machine: its disk, Jupyter port, managed identity and namespace."""

    name: str
    resource_id: str
    root: Path
    port: int
    msi_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    principal_id: str = ""
    tenant_id: str = ""
    assigned_oid: str = ""  # the only user the gateway lets in
    assigned_tenant: str = ""
    sso: bool = True  # enableSSO: without a client id the identity endpoint answers for the assigned user
    server: asyncio.subprocess.Process | None = None
    namespace: sandbox.Namespace | None = None
    script_group: int | None = None  # the startup script's process group: what it leaves running

    @property
    def home(self) -> Path:
        """The notebook user's home on the host (``/home/azureuser`` on the instance)."""
        return self.root / "home"

    @property
    def root_home(self) -> Path:
        """Root's home on the host (``/root`` on the instance)."""
        return self.root / "root"

    @property
    def temp_disk(self) -> Path:
        """The temporary disk on the host (``/mnt`` on the instance)."""
        return self.root / "mnt"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def client_id(self) -> str:
        """The system-assigned identity's client (application) id: ``DEFAULT_IDENTITY_CLIENT_ID``."""
        return stable_id("managed-identity-client", self.principal_id) if self.principal_id else ""

    def inside(self, host_path: Path) -> str:
        """A path of the instance's disk as processes on the instance see it."""
        if self.namespace is None:
            return str(host_path)
        for host, seen in ((self.home, sandbox.HOME), (self.root_home, sandbox.ROOT_HOME), (self.temp_disk, sandbox.TEMP_DISK)):
            if host_path.is_relative_to(host):
                return str(seen / host_path.relative_to(host))
        raise ValueError(f"{host_path} is not on the instance's disk")

    def view(self, path: str) -> Path:
        """Where the host reads ``path`` as the instance sees it (mounts included)."""
        return self.namespace.view(path) if self.namespace else Path(path)


async def power_off(machine: Instance, grace: float = 10.0) -> None:
    """Shut a machine down as a VM does: its processes, then its Jupyter (SIGTERM, ``grace`` seconds,
    SIGKILL), then its mount namespace. Safe to run twice at once (a delete during a start)."""
    await end_processes(machine)
    server, machine.server = machine.server, None
    if server is not None and server.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            if grace:
                server.terminate()
            else:
                server.kill()
        try:
            await asyncio.wait_for(server.wait(), grace or None)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                server.kill()
            await server.wait()
    namespace, machine.namespace = machine.namespace, None
    if namespace is not None:
        await namespace.close()


async def pull_the_plug(machines: list[Instance]) -> None:
    """Power machines off at once, without a grace period (the emulator ends, or its state is reset)."""
    for machine in machines:
        await power_off(machine, grace=0)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mounts_under(root: Path) -> list[str]:
    """FUSE mount points inside ``root`` (from this process's mount table)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    prefix = str(root.resolve()) + "/"
    points = [line.split()[1].encode().decode("unicode_escape") for line in lines if " fuse" in line]
    return [p for p in points if p.startswith(prefix)]


async def end_processes(machine: Instance, grace: float = STOP_GRACE_SECONDS) -> None:
    """Shut the machine's leftover processes down as a VM does: SIGTERM, a grace period, SIGKILL; detach its mounts."""
    group, machine.script_group = machine.script_group, None
    if group is not None and _group_alive(group):
        with contextlib.suppress(ProcessLookupError):  # it may end between the check and the signal
            os.killpg(group, signal.SIGTERM)
        deadline = asyncio.get_running_loop().time() + grace
        while _group_alive(group) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)  # polling: a process group offers nothing to wait on
        if _group_alive(group):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
    for point in mounts_under(machine.home):  # a mount whose process was killed: detach it (lazy unmount)
        fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"
        proc = await asyncio.create_subprocess_exec(fusermount, "-uz", point, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.wait_for(proc.wait(), 10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script_timeout(value: str | None, default: float = 15 * 60) -> float:
    """Seconds of a setup script's ``timeout`` (``"15m"``, ``"90s"``, ``"1h"``)."""
    match = SCRIPT_TIMEOUT.match(str(value or "").strip())
    if not match:
        return default
    return int(match.group(1)) * {"": 60, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _own(path: Path, user: pwd.struct_passwd, mode: int) -> None:
    os.chown(path, user.pw_uid, user.pw_gid)
    path.chmod(mode)


class InstanceRuntime:
    """Brings emulated instances up and down; one per emulator."""

    def __init__(self, state: Any, tls: TLSFiles, root: Path, jupyter_app: str = "jupyterlab") -> None:
        self.state = state
        self.tls = tls
        self.root = root
        self.jupyter_app = jupyter_app
        self.instances: dict[str, Instance] = {}  # resource id (lower) -> machine
        #: Why instances do not run as on Azure here (not root); None when they do.
        self.isolation_unavailable = sandbox.isolation_unavailable()
        if self.isolation_unavailable:
            log.warning("Emulated compute instances do not run as on Azure: %s.", self.isolation_unavailable)

    # -- what the compute model asks -----------------------------------------------------
    def endpoint(self, resource: dict[str, Any]) -> str | None:
        """The base URL of the instance's Jupyter, or None when it has no machine here."""
        machine = self.instances.get(resource["id"].lower())
        return f"https://127.0.0.1:{machine.port}" if machine else None

    def machine(self, resource: dict[str, Any]) -> Instance:
        key = resource["id"].lower()
        if key not in self.instances:
            identity = resource.get("identity") or {}
            assigned = (inner(resource).get("personalComputeInstanceSettings") or {}).get("assignedUser") or {}
            root = self.root / re.sub(r"[^a-z0-9-]", "-", resource["name"].lower())
            self.instances[key] = Instance(
                resource["name"], resource["id"], root, _free_port(), principal_id=identity.get("principalId", ""),
                tenant_id=identity.get("tenantId", ""), assigned_oid=assigned.get("objectId", ""),
                assigned_tenant=assigned.get("tenantId", ""),
            )  # fmt: skip
        return self.instances[key]

    def by_msi_secret(self, secret: str) -> Instance | None:
        return next((m for m in self.instances.values() if secrets.compare_digest(m.msi_secret, secret)), None)

    async def bring_up(self, resource: dict[str, Any]) -> None:
        """Disk, machine, startup script as root, Jupyter as the notebook user; raises :class:`StartupFailed`."""
        machine = self.machine(resource)
        await self.shut_down(resource)
        machine.sso = inner(resource).get("enableSSO") is not False
        self._prepare_disk(machine)
        if self.isolation_unavailable is None:
            try:
                machine.namespace = await sandbox.Namespace.open(machine.home, machine.root_home, machine.temp_disk, machine.root / "masks")
            except RuntimeError as e:
                raise StartupFailed(str(e)) from None
        script = startup_script(resource)
        if script:
            await self._run_script(machine, script)
        await self._start_server(machine)

    async def shut_down(self, resource: dict[str, Any]) -> None:
        machine = self.instances.get(resource["id"].lower())
        if machine is not None:
            await power_off(machine)

    def on_state(self, resource: dict[str, Any]) -> None:
        """A state change: a machine that stops serving stops its Jupyter server."""
        if inner(resource).get("state") not in SERVING and resource["id"].lower() in self.instances:
            asyncio.get_running_loop().create_task(self.shut_down(resource))

    async def forget(self, resource: dict[str, Any]) -> None:
        """The instance was deleted: its machine and disk go with it."""
        await self.shut_down(resource)
        machine = self.instances.pop(resource["id"].lower(), None)
        if machine:
            shutil.rmtree(machine.root, ignore_errors=True)

    def revive(self) -> None:
        """After an emulator restart on its data dir: bring running instances' machines back up."""
        for record in self.state.section("computes").values():
            resource = record["resource"]
            if inner(resource).get("state") in SERVING and not record.get("pending"):
                asyncio.get_running_loop().create_task(self._revive(resource))

    async def _revive(self, resource: dict[str, Any]) -> None:
        try:
            await self.bring_up(resource)
        except StartupFailed as e:
            log.warning("Instance %s did not come back after the restart: %s", resource["name"], e)
        inner(resource)["applications"] = application_endpoints(self, resource)  # its new port
        self.state.mark_dirty()

    async def stop_all(self) -> None:
        await pull_the_plug(list(self.instances.values()))

    def forget_all(self) -> asyncio.Task:
        """Forget every machine at once (a state reset) and power them off in the background."""
        machines = list(self.instances.values())
        self.instances.clear()
        return asyncio.get_running_loop().create_task(pull_the_plug(machines))

    # -- the machine ---------------------------------------------------------------------
    def notebook_user(self) -> pwd.struct_passwd:
        """``azureuser`` on an isolated machine; the emulator's own user otherwise."""
        return sandbox.notebook_user() if self.isolation_unavailable is None else pwd.getpwuid(os.geteuid())

    def _prepare_disk(self, machine: Instance) -> None:
        user = self.notebook_user()
        for path in (machine.home, machine.root_home, machine.temp_disk / EMULATOR_DIR / "gateway", machine.logs):
            path.mkdir(parents=True, exist_ok=True)
        machine.root_home.chmod(0o700)
        _own(machine.home, user, 0o700)
        shutil.copyfile(self.tls.ca_bundle, machine.temp_disk / EMULATOR_DIR / "ca.pem")
        (machine.temp_disk / EMULATOR_DIR / "ca.pem").chmod(0o644)
        gateway = machine.temp_disk / EMULATOR_DIR / "gateway"
        for source, name in ((self.tls.server_chain, "cert.pem"), (self.tls.server_key, "key.pem")):
            shutil.copyfile(source, gateway / name)
            _own(gateway / name, user, 0o600)
        _own(gateway, user, 0o700)

    def environment(self, machine: Instance, as_root: bool = False) -> dict[str, str]:
        """What a process on the instance sees: the machine's identity endpoint and names, no hub or test secrets.

        ``as_root``: the startup script's environment (root's home); otherwise the notebook user's.
        """
        user = self.notebook_user()
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        match = ARM_ID.search(machine.resource_id)
        home = machine.root_home if as_root and machine.namespace else machine.home
        ca = machine.inside(machine.temp_disk / EMULATOR_DIR / "ca.pem")
        env.update(
            HOME=machine.inside(home),
            USER="root" if as_root and machine.namespace else user.pw_name,
            LOGNAME="root" if as_root and machine.namespace else user.pw_name,
            CI_NAME=machine.name,
            CI_RESOURCE_GROUP=match.group(1) if match else "",
            CI_WORKSPACE=match.group(2) if match else "",
            CI_LOCAL_UBUNTU_USER=user.pw_name,
            MSI_ENDPOINT=f"{self.state.urls['instances']}/MSI/auth",
            MSI_SECRET=machine.msi_secret,
            DEFAULT_IDENTITY_CLIENT_ID=machine.client_id,
            # The instance trusts the emulator's CA as an Azure VM trusts public CAs.
            REQUESTS_CA_BUNDLE=ca,
            SSL_CERT_FILE=ca,
            AML_EMULATOR_INSTANCE="1",
        )
        return env

    def user_command(self, machine: Instance, argv: list[str]) -> list[str]:
        """``argv`` as the notebook user on the instance (what its Jupyter and kernels run as)."""
        if machine.namespace is None:
            return argv
        return machine.namespace.command(argv, self.notebook_user())

    async def _run_script(self, machine: Instance, script: dict[str, Any]) -> None:
        if script.get("scriptSource") != "inline":
            raise StartupFailed(
                f"Startup script source {script.get('scriptSource')!r} is not supported by the emulator (inline only)."
            )
        path = machine.temp_disk / EMULATOR_DIR / "startup.sh"
        path.write_bytes(base64.b64decode(script.get("scriptData") or ""))
        path.chmod(0o700)
        argv = ["bash", machine.inside(path), *str(script.get("scriptArguments") or "").split()]
        if machine.namespace is not None:
            argv = machine.namespace.command(argv)  # as root, as Azure runs setup scripts
        log_path = machine.logs / "startup.log"
        cwd = machine.root_home if machine.namespace else machine.home
        with open(log_path, "ab") as out:
            process = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, env=self.environment(machine, as_root=True), stdout=out, stderr=out,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            machine.script_group = process.pid
            try:
                code = await asyncio.wait_for(process.wait(), script_timeout(script.get("timeout")))
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
                raise StartupFailed(f"The startup script did not finish within {script.get('timeout')}.") from None
        if code != 0:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-5:]
            raise StartupFailed(f"The startup script exited with code {code}: " + " | ".join(tail))

    async def _start_server(self, machine: Instance) -> None:
        gateway = machine.temp_disk / EMULATOR_DIR / "gateway"
        argv = [
            sys.executable, "-m", self.jupyter_app, "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={machine.port}", "--ServerApp.port_retries=0",
            f"--ServerApp.certfile={machine.inside(gateway / 'cert.pem')}",
            f"--ServerApp.keyfile={machine.inside(gateway / 'key.pem')}",
            f"--ServerApp.root_dir={machine.inside(machine.home)}", "--ServerApp.terminals_enabled=True",
            # The Azure ML gateway: only the assigned user, signed in with (emulated) Entra ID, gets in.
            "--ServerApp.identity_provider_class=aml_jupyterhub.emulator.instances.gateway.GatewayIdentityProvider",
            f"--GatewayIdentityProvider.authority={self.state.urls['authority']}/{machine.assigned_tenant}",
            f"--GatewayIdentityProvider.client_id={GATEWAY_CLIENT_ID}",
            f"--GatewayIdentityProvider.assigned_oid={machine.assigned_oid}",
            f"--GatewayIdentityProvider.access_url={self.state.urls['control']}/_emulator/arm/access?"
            + urlencode({"scope": machine.resource_id, "action": APPLICATION_ACCESS}),
            f"--GatewayIdentityProvider.ca_bundle={machine.inside(machine.temp_disk / EMULATOR_DIR / 'ca.pem')}",
        ]  # fmt: skip
        if os.geteuid() == 0 and machine.namespace is None:  # no notebook user to run as here
            argv.append("--ServerApp.allow_root=True")
        out = open(machine.logs / "jupyter.log", "ab")  # noqa: SIM115 (the server outlives this call)
        machine.server = await asyncio.create_subprocess_exec(
            *self.user_command(machine, argv), cwd=machine.home, env=self.environment(machine), stdout=out,
            stderr=out, stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        out.close()
        await self._wait_for_server(machine)

    async def _wait_for_server(self, machine: Instance) -> None:
        context = ssl.create_default_context(cafile=str(self.tls.ca_bundle))
        deadline = asyncio.get_running_loop().time() + SERVER_READY_SECONDS
        url = f"https://127.0.0.1:{machine.port}/api"
        while True:
            if machine.server is None or machine.server.returncode is not None:
                raise StartupFailed("Jupyter did not start on the instance (see its jupyter.log).")
            try:
                await AsyncHTTPClient().fetch(HTTPRequest(url, ssl_options=context, request_timeout=5))
                return
            except (HTTPClientError, OSError):
                if asyncio.get_running_loop().time() > deadline:
                    raise StartupFailed(f"Jupyter did not answer within {SERVER_READY_SECONDS:.0f} s.") from None
                await asyncio.sleep(0.2)  # a server starting up: poll its /api
