"""A Fabric token source for Spark kernels under test: real tokens minted by the emulator (control API).

Configured by environment (set by ``spark_fixtures``): ``AML_TEST_CONTROL_URL``,
``AML_TEST_CA_BUNDLE``, ``AML_TEST_TOKEN_USER``, ``AML_TEST_TOKEN_SCOPE``,
``AML_TEST_TOKEN_LIFETIME``. Each fetch appends one line to
``AML_TEST_TOKEN_LOG``: a digest of the token (never the token) and whether a
refresh was forced, so tests can count fetches.
"""

from __future__ import annotations

import hashlib
import os

import jwt
from azure.core.credentials import AccessToken

from aml_jupyterhub.emulator.client import EmulatorControl


def mint(resource: str, force_refresh: bool = False) -> AccessToken:
    control = EmulatorControl(os.environ["AML_TEST_CONTROL_URL"], os.environ["AML_TEST_CA_BUNDLE"])
    lifetime = int(os.environ.get("AML_TEST_TOKEN_LIFETIME", "0")) or None
    token = control.mint_token(os.environ["AML_TEST_TOKEN_USER"], os.environ["AML_TEST_TOKEN_SCOPE"], lifetime)
    with open(os.environ["AML_TEST_TOKEN_LOG"], "a") as log:
        log.write(f"{resource} {hashlib.sha256(token.encode()).hexdigest()[:12]} force={force_refresh}\n")
    expires_on = jwt.decode(token, options={"verify_signature": False})["exp"]
    return AccessToken(token, int(expires_on))
