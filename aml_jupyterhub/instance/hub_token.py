"""The instance's hub API token: traded for the instance's managed-identity token, kept private, renewed.

The token lives in the notebook user's ``~/.aml-jupyterhub/hub-token.json``
(directory 700, file 600, owned by that user, also when the agent writes it
as root) and expires within the hour; when it is missing or near expiry it is
exchanged again (``POST <hub api>/aml/instance-token``). The exchange asks the
instance's managed-identity endpoint for the instance's own identity
(``client_id=$DEFAULT_IDENTITY_CLIENT_ID``): without it, an instance with SSO
answers with the signed-in user's token instead (docs/token-broker.md).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from .user import give, home

RENEW_MARGIN = 300.0


def state_dir() -> Path:
    return Path(os.environ.get("AML_INSTANCE_STATE_DIR") or home() / ".aml-jupyterhub")


def token_file() -> Path:
    return state_dir() / "hub-token.json"


class InstanceTokenError(Exception):
    """The hub did not give this instance a token; the message says why (never a token)."""


def _write_private(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    give(path.parent)


class InstanceHubToken:
    """The hub API token of this instance's user, exchanged from the instance's managed identity."""

    def __init__(self, hub_api_url: str | None = None, audience: str | None = None, timeout: float = 30.0) -> None:
        saved = self._read()
        self.hub_api_url = (hub_api_url or saved.get("hub_api_url") or "").rstrip("/")
        self.audience = audience or saved.get("audience") or ""
        self.timeout = timeout
        if not self.hub_api_url or not self.audience:
            raise InstanceTokenError("this instance was not set up by aml-jupyterhub (no hub URL or audience)")

    @staticmethod
    def _read() -> dict[str, Any]:
        try:
            return json.loads(token_file().read_text())
        except (OSError, ValueError):
            return {}

    def get(self) -> str:
        saved = self._read()
        if saved.get("token") and saved.get("expires_at", 0) - RENEW_MARGIN > time.time():
            return saved["token"]
        return self.exchange()

    def exchange(self) -> str:
        identity_token = instance_identity_token(self.audience)
        response = requests.post(
            f"{self.hub_api_url}/aml/instance-token", json={"identity_token": identity_token}, timeout=self.timeout
        )
        if response.status_code != 200:
            raise InstanceTokenError(f"the hub refused this instance ({response.status_code}): {_message(response)}")
        body = response.json()
        _write_private(
            token_file(),
            {"token": body["token"], "expires_at": body["expires_at"], "user": body["user"], "hub_api_url": self.hub_api_url, "audience": self.audience},
        )
        return body["token"]


def instance_identity_token(audience: str) -> str:
    """A token for ``audience`` from the instance's own system-assigned identity (never the signed-in user's)."""
    from azure.identity import ManagedIdentityCredential

    # Named by its client id, as Azure ML documents: without it an SSO instance answers for the user.
    with ManagedIdentityCredential(client_id=os.environ.get("DEFAULT_IDENTITY_CLIENT_ID") or None) as credential:
        return credential.get_token(f"{audience}/.default").token


def _message(response: requests.Response) -> str:
    try:
        return str(response.json().get("message", response.reason))
    except ValueError:
        return response.reason
