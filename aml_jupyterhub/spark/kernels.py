"""Install sparkmagic's PySpark and Spark kernelspecs, bound to the current Python."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path

KERNELS = ("pysparkkernel", "sparkkernel")


def install_kernelspecs(user: bool = True, prefix: str | None = None) -> list[str]:
    """Install the kernelspecs (``user`` or under ``prefix``); returns their install paths.

    sparkmagic's kernel.json says ``python``; ours says ``sys.executable`` so the
    kernel runs where sparkmagic and this plug-in are installed.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    spec = find_spec("sparkmagic")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("sparkmagic is not installed (pip install 'aml-jupyterhub[spark]')")
    kernels_dir = Path(next(iter(spec.submodule_search_locations))) / "kernels"
    manager = KernelSpecManager()
    installed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in KERNELS:
            source = Path(tmp) / name
            shutil.copytree(kernels_dir / name, source, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
            kernel_json = source / "kernel.json"
            spec_data = json.loads(kernel_json.read_text())
            spec_data["argv"][0] = sys.executable
            kernel_json.write_text(json.dumps(spec_data, indent=1))
            installed.append(
                manager.install_kernel_spec(str(source), name, user=user and prefix is None, prefix=prefix, replace=None)
            )
    return installed
