"""``make demo``: the local Azure emulator and a JupyterHub signed in against it.

Starts the emulator (state kept in ``.demo/emulator``, so a restart keeps
compute instances and shares), writes its endpoints to ``.demo/endpoints.json``
and runs JupyterHub with ``deployments/local_emulator/jupyterhub_config.py``,
which reads them. The terminal shows a short banner; the services' logs go to
``.demo/logs/`` (``hub.log``; ``emulator.log`` also has Spark's and the
instances' output). Ctrl-C stops both. The hub's internal ports (its API and
the proxy's API) are free ones, so a demo never collides with another hub or a
test run; the hub and its proxy are stopped with the launcher, never orphaned.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from .core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config
from .core.server import EmulatorThread, endpoints_line

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("authority", "graph", "arm", "files", "control", "instances", "livy", "fabric", "databricks")
EMULATOR_PORT_BASE = 8441  # fixed by default: instances and browsers keep the URLs across restarts
STOP_TIMEOUT = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aml_jupyterhub.emulator.demo", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path(".demo"), help="where the demo keeps its state and logs")
    p.add_argument("--config", type=Path, default=REPO / "deployments" / "local_emulator" / "jupyterhub_config.py")
    p.add_argument("--hub-port", type=int, default=8000, help="JupyterHub's public port (`make demo PORT=...`)")
    p.add_argument(
        "--emulator-port-base",
        type=int,
        default=EMULATOR_PORT_BASE,
        help=f"the emulator's {len(SERVICES)} services listen on this port and the next ones (`make demo EMULATOR_PORT=...`)",
    )
    p.add_argument("--any-ports", action="store_true", help="let the emulator pick free ports (tests)")
    return p.parse_args(argv)


def emulator_ports(base: int) -> dict[str, int]:
    return {name: base + i for i, name in enumerate(SERVICES)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret_file(path: Path) -> str:
    """A random secret kept in ``path`` (mode 600), so restarts can read old auth_state."""
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _mount_note() -> str:
    """Why instances here cannot mount the user space (FUSE as root, as on Azure), or ""."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        return (
            "  NOTE: the user space is a real FUSE mount (rclone) made as root, as on a compute instance;\n"
            "  this machine is not root or has no /dev/fuse, so instances will fail their setup saying so.\n"
        )
    return ""


def _banner(endpoints: dict, hub_url: str, logs: Path) -> str:
    users = "\n".join(f"    {u.username:<24} password: {u.password}" for u in default_config().users)
    return (
        f"\n  JupyterHub on the local Azure emulator: {hub_url}\n\n"
        f"  Sign in at the emulated Entra ID page as one of (eve is outside the allowed groups):\n{users}\n\n"
        f"  Your browser will warn about the emulator's certificate; its CA: {endpoints['ca_bundle']}\n"
        f"  Logs: {logs}/ (hub.log, emulator.log)    Stop: Ctrl-C\n"
        + _mount_note()
    )


def _logs_to_file(path: Path) -> TextIO:
    """Send this process's stdout/stderr (the emulator, Spark's JVM, the instances) to ``path``.

    Returns the terminal, for the few lines the person running the demo should see.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return terminal


def stop_hub(hub: subprocess.Popen, proxy_pid_file: Path, timeout: float = STOP_TIMEOUT) -> None:
    """Stop the hub (its process group) and then its proxy, whichever of them is still running."""
    if hub.poll() is None:
        _signal_group(hub.pid, signal.SIGTERM)
        try:
            hub.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(hub.pid, signal.SIGKILL)
            hub.wait(timeout)
    _stop_proxy(proxy_pid_file, timeout)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _stop_proxy(pid_file: Path, timeout: float) -> None:
    """JupyterHub starts configurable-http-proxy in a session of its own: a hub that died leaves it running."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"configurable-http-proxy" not in cmdline:
        return  # not our proxy (a recycled pid)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _zombie(pid):
                return
            time.sleep(0.1)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(REPO / "node_modules" / ".bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    if shutil.which("configurable-http-proxy", path=path) is None:
        print("configurable-http-proxy not found: run `make demo` (it runs npm install)", file=sys.stderr)
        return 2
    terminal = _logs_to_file(logs / "emulator.log")
    emulator = EmulatorThread(
        data_dir=workdir / "emulator", ports=None if args.any_ports else emulator_ports(args.emulator_port_base),
        instance_runtime=True,
    )
    try:
        endpoints = emulator.start()
    except OSError as e:
        print(f"The emulator could not listen ({e}); free the ports or run `make demo EMULATOR_PORT=<base>`.", file=terminal)
        return 2
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(endpoints) + "\n")

    hub_dir = workdir / "hub"
    hub_dir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PATH": path,
        "AML_EMULATOR_ENDPOINTS": str(endpoints_file),
        "AML_DEMO_HOME": str(workdir / "homes"),
        "AML_DEMO_HUB_PORT": str(args.hub_port),
        "AML_DEMO_HUB_API_PORT": str(free_port()),
        "AML_DEMO_PROXY_API_PORT": str(free_port()),
        "AML_CLIENT_ID": DEMO_CLIENT_ID,
        "AML_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "JUPYTERHUB_CRYPT_KEY": _secret_file(workdir / "crypt_key"),
        # The emulated storage account's key: the hub's own credential for the users' shares.
        "AML_USERSPACE_ACCOUNT_KEY": default_config().storage_accounts[0].key,
    }
    with open(logs / "hub.log", "ab") as hub_log:
        hub = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(args.config)], cwd=hub_dir, env=env,
            stdin=subprocess.DEVNULL, stdout=hub_log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    print(_banner(endpoints, f"http://127.0.0.1:{args.hub_port}", logs), file=terminal)
    signal.signal(signal.SIGTERM, lambda *_: _signal_group(hub.pid, signal.SIGTERM))
    try:
        code = hub.wait()
        if code:
            print(f"  JupyterHub stopped (exit code {code}); see {logs / 'hub.log'}", file=terminal)
        return code
    except KeyboardInterrupt:
        print("  Stopping ...", file=terminal)
        return 0
    finally:
        stop_hub(hub, hub_dir / "jupyterhub-proxy.pid")
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
