"""Fresh delegated Entra ID tokens for the user's own code, from the hub's token broker.

In a notebook::

    from aml_jupyterhub.tokens import get_token, HubTokenCredential

    token = get_token("fabric").token                 # a str for an Authorization header
    credential = HubTokenCredential("storage")        # any Azure SDK client takes this

Nothing secret is stored on disk: the hub keeps the refresh token; this asks
the hub with the server's short-lived hub API token (``JUPYTERHUB_API_TOKEN``,
or on a compute instance the token its managed identity was traded for)
each time a cached token nears expiry.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import requests
from azure.core.credentials import AccessToken


class TokenBrokerError(Exception):
    """The hub refused or failed; the message is the hub's explanation (never a token)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Token broker answered {status}: {message}")
        self.status = status

    @property
    def needs_login(self) -> bool:
        return self.status == 401


class TokenBrokerClient:
    """Asks ``<hub API>/aml/tokens/<resource>``; caches each token until ``margin`` before expiry."""

    def __init__(
        self,
        hub_api_url: str | None = None,
        api_token: str | None = None,
        *,
        ca_bundle: str | None = None,
        timeout: float = 15.0,
        margin: float = 120.0,
    ) -> None:
        api_token = api_token or os.environ.get("JUPYTERHUB_API_TOKEN")
        if api_token:
            self.hub_api_url = (hub_api_url or os.environ["JUPYTERHUB_API_URL"]).rstrip("/")
            self._hub_token: Any = lambda: api_token
        else:  # on a compute instance: the token its managed identity was traded for
            from .instance.hub_token import InstanceHubToken

            instance = InstanceHubToken(hub_api_url)
            self.hub_api_url, self._hub_token = instance.hub_api_url, instance.get
        self.verify: str | bool = ca_bundle or os.environ.get("AML_HUB_CA_BUNDLE") or True
        self.timeout = timeout
        self.margin = margin
        self._cache: dict[str, AccessToken] = {}
        self._lock = threading.Lock()

    def get_token(self, resource: str, force_refresh: bool = False) -> AccessToken:
        """``force_refresh``: skip the cache (the resource refused a token that looked valid)."""
        with self._lock:
            cached = self._cache.get(resource)
            if cached and not force_refresh and cached.expires_on - self.margin > time.time():
                return cached
            token = self._fetch(resource)
            self._cache[resource] = token
            return token

    def _fetch(self, resource: str) -> AccessToken:
        response = requests.get(
            f"{self.hub_api_url}/aml/tokens/{resource}",
            headers={"Authorization": f"token {self._hub_token()}"},
            timeout=self.timeout,
            verify=self.verify,
        )
        if response.status_code != 200:
            try:
                message = response.json().get("message", response.reason)
            except ValueError:
                message = response.reason
            raise TokenBrokerError(response.status_code, message)
        body = response.json()
        return AccessToken(body["access_token"], int(body["expires_on"]))


_default_client: TokenBrokerClient | None = None


def get_token(resource: str, force_refresh: bool = False) -> AccessToken:
    """A fresh delegated token for ``resource`` (e.g. "fabric", "storage", "databricks")."""
    global _default_client
    if _default_client is None:
        _default_client = TokenBrokerClient()
    return _default_client.get_token(resource, force_refresh)


class HubTokenCredential:
    """An ``azure.core`` TokenCredential backed by the hub's token broker.

    The resource is named once (the broker decides what it may mint);
    the scopes an SDK passes are ignored.
    """

    def __init__(self, resource: str, client: TokenBrokerClient | None = None) -> None:
        self.resource = resource
        self.client = client or TokenBrokerClient()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self.client.get_token(self.resource)

    def close(self) -> None:
        return None

    def __enter__(self) -> HubTokenCredential:
        return self

    def __exit__(self, *args: Any) -> None:
        return None
