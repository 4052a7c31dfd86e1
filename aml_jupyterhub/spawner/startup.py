"""The startup script every instance runs on every start: pure, secret-free, tested without Azure.

Azure ML runs it as root; the agent it starts writes what the user needs into
the notebook user's home (``$CI_LOCAL_UBUNTU_USER``), owned by that user. Its
output is kept in the workspace's file share (``Logs/<compute>``), which other
workspace members can read, so nothing it prints may be secret. It only names the hub; the instance proves who it is with its managed
identity (docs/token-broker.md), so nothing in the compute resource, which
other workspace members can read, opens anything.
"""

from __future__ import annotations

import base64
import shlex

from azure.ai.ml._restclient.arm_ml_service.models import ScriptReference as RestScriptReference
from azure.ai.ml.entities import ScriptReference

AGENT_MODULE = "aml_jupyterhub.instance"


class InlineScript(ScriptReference):
    """A script kept inline in the compute resource (``scriptSource: inline``).

    azure-ai-ml only writes references to scripts in the workspace's file
    share; inline keeps the script with the instance and out of shared storage.
    """

    def __init__(self, script: str, timeout_minutes: int = 15) -> None:
        super().__init__(timeout_minutes=timeout_minutes)
        self.script = script

    def _to_rest_object(self) -> RestScriptReference:
        return RestScriptReference(
            script_source="inline",
            script_data=base64.b64encode(self.script.encode()).decode(),
            timeout=f"{self.timeout_minutes}m",
        )


def startup_script(hub_url: str, audience: str, setup_command: str = "", python: str = "python3") -> str:
    """Bash run as root as the instance starts: optional admin setup, then the aml-jupyterhub agent."""
    lines = [
        "#!/bin/bash",
        "# aml-jupyterhub: mount the user's private share and configure Spark kernels.",
        "# No secret here: the instance proves who it is to the hub with its managed identity.",
        "# Runs as root; the agent puts what the user needs in $CI_LOCAL_UBUNTU_USER's home, private.",
        "set -euo pipefail",
    ]
    if setup_command.strip():
        lines.append(setup_command.strip())
    lines.append("umask 077  # what the agent creates is private unless it says otherwise")
    lines.append(f"exec {shlex.quote(python)} -m {AGENT_MODULE} start --hub-url {shlex.quote(hub_url)} --audience {shlex.quote(audience)}")
    return "\n".join(lines) + "\n"
