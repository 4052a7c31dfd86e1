"""Fixtures for tests of the emulated files service: SDK clients per credential type, unique shares."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.storage.fileshare import ShareClient, ShareServiceClient

from aml_jupyterhub.emulator import EmulatorThread
from aml_jupyterhub.emulator.client import EmulatorControl
from aml_jupyterhub.emulator.core.config import StorageAccount

ACCOUNT = "userfilesdemo"
STORAGE_SCOPE = "https://storage.azure.com/user_impersonation"


class StaticTokenCredential:
    """A TokenCredential that always returns one (emulator-minted) access token."""

    def __init__(self, token: str, expires_on: int | None = None) -> None:
        self.token = token
        self.expires_on = expires_on or int(time.time()) + 3600

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, self.expires_on)


@pytest.fixture(scope="session")
def storage_account(emulator: EmulatorThread) -> StorageAccount:
    account = emulator.state.config.storage_account(ACCOUNT)
    assert account is not None
    return account


@pytest.fixture(scope="session")
def files_url(emulator: EmulatorThread) -> str:
    """The account URL, path-style as the SDK uses it for a loopback host."""
    return f"{emulator.endpoints['files']}/{ACCOUNT}"


@pytest.fixture(scope="session")
def sdk_options(ca_bundle: str) -> dict[str, Any]:
    """Client options: trust the emulator's CA and never sleep in Storage's retry policy."""
    return {"connection_verify": ca_bundle, "retry_total": 0}


@pytest.fixture
def share_name() -> Callable[[], str]:
    """Unique, valid share names (the session emulator is shared by every test)."""

    def make() -> str:
        return f"t{uuid.uuid4().hex[:20]}"

    return make


@pytest.fixture
def key_service(files_url: str, storage_account: StorageAccount, sdk_options: dict[str, Any]) -> ShareServiceClient:
    """A ShareServiceClient authorized with the account key (Shared Key)."""
    credential = {"account_name": storage_account.name, "account_key": storage_account.key}
    return ShareServiceClient(files_url, credential=credential, **sdk_options)


@pytest.fixture
def new_share(key_service: ShareServiceClient, share_name: Callable[[], str]) -> Iterator[ShareClient]:
    """A fresh share (quota 1 GiB) created with the account key, deleted afterwards."""
    share = key_service.create_share(share_name(), quota=1)
    yield share
    share.delete_share()


@pytest.fixture
def sas_client(files_url: str, sdk_options: dict[str, Any]) -> Callable[..., Any]:
    """``make(cls, sas, **names)``: an SDK client of ``cls`` authorized by a SAS string."""

    def make(cls: type, sas: str, **names: str) -> Any:
        return cls(files_url, credential=sas, **names, **sdk_options)

    return make


@pytest.fixture
def token_for(control: EmulatorControl) -> Callable[..., StaticTokenCredential]:
    """``token_for(user, lifetime=None)``: a TokenCredential with the user's delegated Storage token."""

    def make(user: str, lifetime: int | None = None) -> StaticTokenCredential:
        return StaticTokenCredential(control.mint_token(user, STORAGE_SCOPE, lifetime))

    return make


@pytest.fixture
def bearer_client(files_url: str, sdk_options: dict[str, Any]) -> Callable[..., Any]:
    """``make(cls, credential, **names)``: an SDK client using a token (intent ``backup``)."""

    def make(cls: type, credential: Any, **names: str) -> Any:
        return cls(files_url, credential=credential, token_intent="backup", **names, **sdk_options)

    return make
