"""The startup agent: run by the instance's startup script on every start, as root on Azure.

Everything it sets up for the user lands in the notebook user's home (or the
user space mounted there), owned by that user, private (:mod:`.user`).

1. trade the instance's managed identity for the user's hub token (``hub_token``);
2. ask the hub what to set up (``GET <hub api>/aml/instance-config?compute=<CI_NAME>``);
3. mount the user's share (``mount``);
4. write the Spark kernels' configuration into the user space and install the kernels;
5. write the admin's settings for the user's code, and copy the example notebooks
   into the user space (once: the user's edits are kept);
6. configure the instance's Jupyter to report activity to the hub and show
   JupyterLab's Hub menu (``activity``).

Each step logs what it did, never a credential; any failure exits non-zero
with a one-line reason, which Azure shows as the instance's setup error.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import requests

from .activity import configure_jupyter
from .hub_token import InstanceHubToken, state_dir
from .mount import mount, mount_point
from .user import give, home, private_dirs

log = logging.getLogger("aml_jupyterhub.instance")


def fetch_config(hub: InstanceHubToken, compute: str, timeout: float = 30.0) -> dict[str, Any]:
    response = requests.get(
        f"{hub.hub_api_url}/aml/instance-config",
        params={"compute": compute},
        headers={"Authorization": f"token {hub.get()}"},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RuntimeError(f"the hub did not give this instance its configuration ({response.status_code})")
    return response.json()


def configure_spark(spark: dict[str, Any], conf_dir: Path) -> None:
    from ..spark import install_kernelspecs, write_sparkmagic_config

    write_sparkmagic_config(spark, conf_dir)
    give(conf_dir)
    link = home() / ".sparkmagic"
    if link.is_symlink() or not link.exists():
        if link.is_symlink():
            link.unlink()
        link.symlink_to(conf_dir, target_is_directory=True)
        give(link)
    # The user's own kernelspecs (~/.local/share/jupyter/kernels), whoever runs the agent.
    kernels = private_dirs(home(), ".local/share/jupyter/kernels")
    install_kernelspecs(prefix=str(home() / ".local"))
    give(kernels)


def start(hub_api_url: str, audience: str) -> None:
    compute = os.environ.get("CI_NAME", "")
    hub = InstanceHubToken(hub_api_url, audience)
    hub.get()
    log.info("hub token obtained for this instance")
    config = fetch_config(hub, compute)
    private_dirs(home(), ".jupyter")
    give(configure_jupyter(
        home(), hub.hub_api_url, config["user"], config.get("server", ""),
        config.get("activity_interval", 60.0), config.get("hub_public_url", ""),
    ))  # fmt: skip  (the notebook user's Jupyter reads it: theirs, private)
    space = config.get("userspace")
    if space:
        log.info("user space %s mounted at %s", space["share_url"].rsplit("/", 1)[-1], mount(space))
    base = mount_point(space) if space else home()
    if config.get("spark"):
        conf_dir = private_dirs(base, Path(".sparkmagic") / compute)
        configure_spark(config["spark"], conf_dir)
        log.info("Spark kernels configured (%s)", conf_dir)
    settings_file = private_dirs(state_dir().parent, state_dir().name) / "settings.json"
    settings_file.write_text(json.dumps(config.get("settings") or {}))
    give(settings_file)
    copied = copy_examples(base / "examples")
    if copied:
        log.info("example notebooks copied: %s", ", ".join(copied))


def copy_examples(target: Path) -> list[str]:
    """Copy the shipped example notebooks that are not in ``target`` yet."""
    source = Path(__file__).resolve().parent.parent / "examples"
    private_dirs(target.parent, target.name)
    copied = []
    for notebook in sorted(source.glob("*.ipynb")):
        if not (target / notebook.name).exists():
            shutil.copyfile(notebook, target / notebook.name)
            give(target / notebook.name)
            copied.append(notebook.name)
    return copied
