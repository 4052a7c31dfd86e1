"""``make demo``: the local Azure emulator and a JupyterHub signed in against it.

Starts the emulator (state kept in ``.demo/emulator``, so a restart keeps
compute instances and shares), writes its endpoints to ``.demo/endpoints.json``
and runs JupyterHub with ``deployments/local_emulator/jupyterhub_config.py``,
which reads them. Ctrl-C stops both.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from .core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, default_config
from .core.server import EmulatorThread, endpoints_line

REPO = Path(__file__).resolve().parents[2]
DEMO_PORTS = {"authority": 8441, "graph": 8442, "arm": 8443, "files": 8444, "control": 8445, "instances": 8446, "livy": 8447, "fabric": 8448, "databricks": 8449}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m aml_jupyterhub.emulator.demo", description=__doc__)
    p.add_argument("--workdir", type=Path, default=Path(".demo"), help="where the demo keeps its state")
    p.add_argument("--config", type=Path, default=REPO / "deployments" / "local_emulator" / "jupyterhub_config.py")
    p.add_argument("--hub-port", type=int, default=8000, help="JupyterHub's public port")
    p.add_argument(
        "--any-ports", action="store_true", help="let the emulator pick free ports (tests) instead of 8441-8445"
    )
    return p.parse_args(argv)


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


def _banner(endpoints: dict, hub_url: str) -> str:
    config = default_config()
    users = "\n".join(
        f"    {u.username:<28} password: {u.password:<10} {u.display_name}" for u in config.users
    )
    return (
        f"\n  JupyterHub on the local Azure emulator: {hub_url}\n"
        f"  Sign in at the emulated Entra ID page as one of:\n{users}\n"
        f"  (eve is outside the allowed groups.)\n"
        f"  Your browser will warn about the emulator's certificate: its CA is {endpoints['ca_bundle']}\n"
        f"  Emulator control API: {endpoints['control']}/_emulator/state\n"
        + _mount_note()
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = EmulatorThread(
        data_dir=workdir / "emulator", ports=None if args.any_ports else DEMO_PORTS, instance_runtime=True
    )
    endpoints = emulator.start()
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(endpoints) + "\n")
    print(endpoints_line(endpoints), flush=True)

    hub_dir = workdir / "hub"
    hub_dir.mkdir(exist_ok=True)
    path = os.pathsep.join([str(REPO / "node_modules" / ".bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = {
        **os.environ,
        "PATH": path,
        "AML_EMULATOR_ENDPOINTS": str(endpoints_file),
        "AML_DEMO_HOME": str(workdir / "homes"),
        "AML_DEMO_HUB_PORT": str(args.hub_port),
        "AML_CLIENT_ID": DEMO_CLIENT_ID,
        "AML_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        "JUPYTERHUB_CRYPT_KEY": _secret_file(workdir / "crypt_key"),
        # The emulated storage account's key: the hub's own credential for the users' shares.
        "AML_USERSPACE_ACCOUNT_KEY": default_config().storage_accounts[0].key,
    }
    if shutil.which("configurable-http-proxy", path=path) is None:
        print("configurable-http-proxy not found: run `make demo` (it runs npm install)", file=sys.stderr)
        return 2
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(args.config)], cwd=hub_dir, env=env)
    print(_banner(endpoints, f"http://127.0.0.1:{args.hub_port}"), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: hub.terminate())
    try:
        return hub.wait()
    except KeyboardInterrupt:
        hub.terminate()
        return hub.wait(30)
    finally:
        emulator.stop()


if __name__ == "__main__":
    sys.exit(main())
