"""The hub's Entra ID token client under a storm: calls queue for a connection, they do not time out.

bench/spawn_storm.py --users 1000 lost 166 of 1000 creates to tornado's "Timeout in request queue":
tornado counts time waiting for a free connection against each request's timeout, so the calls
behind the first ``max_connections`` failed while Entra ID was merely slow.
"""

from __future__ import annotations

import asyncio

import pytest

from aml_jupyterhub.auth.entra_client import EntraError, EntraTokenClient, EntraUnavailable
from aml_jupyterhub.emulator.core.config import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from support.entra_fixtures import TENANT


def test_calls_beyond_the_pool_wait_for_a_connection_instead_of_failing(emulator, control, ca_bundle):
    control.inject(service="authority", method="POST", path=r"/oauth2/v2.0/token$", latency=1.0, count=100)  # a slow Entra, for every call
    token_url = f"{emulator.endpoints['authority']}/{TENANT.id}/oauth2/v2.0/token"

    async def storm() -> list[BaseException]:
        client = EntraTokenClient(
            token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ca_certs=ca_bundle, timeout=1.8, max_retries=0, max_connections=2
        )
        calls = [client.refresh(f"not-a-refresh-token-{i}", "https://storage.azure.com/.default") for i in range(6)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 60)

    answers = asyncio.run(storm())
    # Every call reached Entra ID and got its answer (the refresh tokens are made up: invalid_grant);
    # none was refused for waiting behind the two connections (3 s of queue for the last ones).
    assert [type(a) for a in answers] == [EntraError] * 6, answers
    assert all(a.error == "invalid_grant" for a in answers)


def test_a_queue_that_never_moves_is_a_clear_bounded_failure(emulator, control, ca_bundle):
    control.inject(service="authority", method="POST", path=r"/oauth2/v2.0/token$", latency=3.0, count=100)
    token_url = f"{emulator.endpoints['authority']}/{TENANT.id}/oauth2/v2.0/token"

    async def two() -> list[BaseException]:
        client = EntraTokenClient(
            token_url, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, ca_certs=ca_bundle, timeout=10, max_retries=0,
            max_connections=1, queue_timeout=1.0,
        )  # fmt: skip
        calls = [client.refresh(f"not-a-refresh-token-{i}", "https://storage.azure.com/.default") for i in range(2)]
        return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)

    first, second = asyncio.run(two())
    assert isinstance(first, EntraError)
    assert isinstance(second, EntraUnavailable) and "no connection to Entra ID was free within 1 s" in str(second)
