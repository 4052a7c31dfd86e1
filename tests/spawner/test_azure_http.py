"""The hub's shared HTTP pool for Azure calls: no worker thread per request, the environment's proxy
honoured without aiohttp's per-request ``trust_env`` look-ups, one pool for every user."""

from __future__ import annotations

import asyncio
import time

from azure.core.credentials import AccessToken

from aml_jupyterhub.azure_http import SharedSession, env_proxies
from aml_jupyterhub.emulator.core.config import default_config
from aml_jupyterhub.spawner.azure_calls import ArmEndpoint, ComputeClient
from aml_jupyterhub.spawner.profiles import Workspace
from support.arm_fixtures import ARM_SCOPE
from support.no_threads import NoThreads

WS = default_config().workspaces[0]
WORKSPACE = Workspace("research", WS.subscription_id, WS.resource_group, WS.name, "eastus")


class Minted:
    """An async credential: alice's delegated ARM token from the emulator's control API."""

    def __init__(self, control) -> None:
        self.token = AccessToken(control.mint_token("alice@contoso.example", ARM_SCOPE), int(time.time()) + 3600)

    async def get_token(self, *scopes, **kwargs) -> AccessToken:
        return self.token


def test_arm_calls_of_two_users_share_one_pool_and_never_use_a_worker_thread(emulator, control):
    async def scenario() -> tuple[int, bool]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(NoThreads())
        endpoint = ArmEndpoint(emulator.endpoints["arm"], emulator.endpoints["ca_bundle"], 30)
        alice, again = ComputeClient(endpoint, WORKSPACE, Minted(control)), ComputeClient(endpoint, WORKSPACE, Minted(control))
        try:
            listed = await alice.list()
            await again.get("jh-nobody-here")  # 404: None
            same = alice._client._pipeline._transport.session is again._client._pipeline._transport.session
        finally:
            await alice.close()
            await again.close()
            await SharedSession.close_all()
        return len(listed), same

    listed, same_pool = asyncio.run(scenario())
    assert listed >= 0 and same_pool


def test_the_environments_proxy_is_honoured_once_per_url(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.blob.core.windows.net")
    env_proxies.cache_clear()
    try:
        assert env_proxies("https://management.azure.com") == {"https": "http://proxy.corp.example:3128"}
        assert env_proxies("https://acct.blob.core.windows.net/share") is None
        assert env_proxies("https://localhost:8443") is None
        monkeypatch.delenv("HTTPS_PROXY")
        env_proxies.cache_clear()
        assert env_proxies("https://management.azure.com") is None
    finally:
        env_proxies.cache_clear()
