"""Fixtures for Spark tests: real sparkmagic PySpark kernels (jupyter_client) against the emulated Livy services.

Each kernel gets its own ``SPARKMAGIC_CONF_DIR`` with the config.json that
:func:`aml_jupyterhub.spark.sparkmagic_config` builds from admin settings, and
runs the kernelspec :func:`aml_jupyterhub.spark.install_kernelspecs` installed.
Fabric kernels get delegated tokens from :mod:`support.spark_tokens` (minted by
the emulator) unless a test passes another token source.
"""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

from aml_jupyterhub.emulator.livy import executor as livy_executor
from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.spark import install_kernelspecs, parse_spark_settings, sparkmagic_config, write_sparkmagic_config

TESTS = Path(__file__).resolve().parents[1]
FABRIC_SCOPE = "https://api.fabric.microsoft.com/Lakehouse.Execute.All https://api.fabric.microsoft.com/Code.AccessFabric.All"
ALICE = "alice@contoso.example"


@dataclass
class CellResult:
    """What a cell sent back: its reply status and its streams."""

    status: str
    stdout: str = ""
    stderr: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.stdout + self.stderr + "".join(str(o.get("text/plain", "")) for o in self.outputs)


class SparkKernel:
    """A running pysparkkernel and a client for it."""

    def __init__(self, kernel_dirs: list[str], conf_dir: Path, env: dict[str, str]) -> None:
        self.conf_dir = conf_dir
        self.km = KernelManager(kernel_name="pysparkkernel", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
        self.km.start_kernel(env=env)
        self.client = self.km.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str, timeout: float = 120) -> CellResult:
        """Execute ``code`` and gather its iopub output until the kernel is idle again."""
        msg_id = self.client.execute(code)
        result = CellResult(status="?")
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no answer from the kernel within {timeout}s for {code!r}") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                if content["name"] == "stdout":
                    result.stdout += content["text"]
                else:
                    result.stderr += content["text"]
            elif kind in ("execute_result", "display_data"):
                result.outputs.append(content["data"])
            elif kind == "error":
                result.stderr += "\n".join(content["traceback"])
            elif kind == "status" and content["execution_state"] == "idle":
                break
        reply = self.client.get_shell_msg(timeout=timeout)
        result.status = reply["content"]["status"]
        return result

    def shutdown(self) -> None:
        """A clean shutdown: the kernel deletes its Livy session."""
        if self.km.is_alive():
            self.client.stop_channels()
            self.km.shutdown_kernel(now=False)

    def kill(self) -> None:
        if self.km.is_alive():
            self.client.stop_channels()
            self.km.shutdown_kernel(now=True)


@pytest.fixture(scope="session")
def spark_kernel_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The PySpark and Spark kernelspecs, installed into a private prefix."""
    prefix = tmp_path_factory.mktemp("spark-kernels")
    installed = install_kernelspecs(prefix=str(prefix))
    return sorted({str(Path(p).parent) for p in installed})


@pytest.fixture(scope="session")
def warm_spark(emulator) -> None:
    """Start the emulator's shared local SparkSession once (a few seconds), before any timing matters."""
    livy_executor.start({}).result(180)


@pytest.fixture
def livy_control(control: EmulatorControl) -> Iterator[EmulatorControl]:
    """The control API; Livy settings are restored after the test."""
    yield control
    control.livy_reset_settings()


@pytest.fixture
def fabric_endpoint(emulator) -> str:
    """A Fabric Livy endpoint in a fresh (random) workspace and lakehouse."""
    ws, lh = uuid.uuid4(), uuid.uuid4()
    return f"{emulator.endpoints['fabric']}/v1/workspaces/{ws}/lakehouses/{lh}/livyapi/versions/2023-12-01"


@pytest.fixture
def spark_kernel(emulator, ca_bundle, spark_kernel_dirs, warm_spark, livy_control, tmp_path) -> Iterator[Callable[..., SparkKernel]]:
    """``spark_kernel(settings, token_user=..., token_scope=..., token_lifetime=None, env=None)`` -> a started kernel.

    ``settings`` is the admin dict given to :func:`parse_spark_settings`; every
    kernel started is killed after the test if it is still running.
    """
    kernels: list[SparkKernel] = []

    def start(settings: dict[str, Any], token_user: str = ALICE, token_scope: str = FABRIC_SCOPE,
              token_lifetime: int | None = None, env: dict[str, str] | None = None) -> SparkKernel:
        index = len(kernels)
        conf_dir = tmp_path / f"sparkmagic-{index}"
        raw = {"token_source": "support.spark_tokens:mint", **settings}
        write_sparkmagic_config(sparkmagic_config(parse_spark_settings(raw), ca_bundle=ca_bundle), conf_dir)
        kernel_env = {
            **{k: v for k, v in os.environ.items() if k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")},
            "SPARKMAGIC_CONF_DIR": str(conf_dir),
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "AML_TEST_CONTROL_URL": emulator.endpoints["control"],
            "AML_TEST_CA_BUNDLE": ca_bundle,
            "AML_TEST_TOKEN_USER": token_user,
            "AML_TEST_TOKEN_SCOPE": token_scope,
            "AML_TEST_TOKEN_LIFETIME": str(token_lifetime or 0),
            "AML_TEST_TOKEN_LOG": str(conf_dir / "token-fetches.log"),
            **(env or {}),
        }
        kernel = SparkKernel(spark_kernel_dirs, conf_dir, kernel_env)
        kernels.append(kernel)
        return kernel

    yield start
    for kernel in kernels:
        kernel.kill()


def token_fetches(kernel: SparkKernel) -> list[str]:
    """The token source's log lines for ``kernel`` (digests, never tokens)."""
    path = kernel.conf_dir / "token-fetches.log"
    return path.read_text().splitlines() if path.exists() else []
