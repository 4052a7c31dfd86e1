"""Delegated Microsoft Entra ID sign-in for JupyterHub."""

from .authenticator import AzureAdDelegatedAuthenticator, keep_newest_tokens
from .broker import DelegatedCredential, DelegatedTokens, NeedsLogin, TokenUnavailable
from .handlers import BROKER_SCOPE, configure_token_broker

__all__ = [
    "BROKER_SCOPE",
    "AzureAdDelegatedAuthenticator",
    "DelegatedCredential",
    "DelegatedTokens",
    "NeedsLogin",
    "TokenUnavailable",
    "configure_token_broker",
    "keep_newest_tokens",
]
