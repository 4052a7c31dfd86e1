"""sparkmagic authenticator ``AmlBasicEnv``: HTTP Basic for Apache Livy, the password read from the environment.

The config file names the variable (``password_env``), never the password; the
variable is read on every request, so rotating it needs no new config.
"""

from __future__ import annotations

import os

from requests.auth import HTTPBasicAuth
from sparkmagic.auth.customauth import Authenticator

from .runtime import plugin_settings


class EnvBasicAuth(Authenticator):
    def __init__(self, parsed_attributes=None):
        super().__init__(parsed_attributes)
        settings = plugin_settings()
        self.username = settings.get("username") or getattr(parsed_attributes, "user", "") or ""
        self.password_env = settings.get("password_env") or ""

    def __call__(self, request):
        password = os.environ.get(self.password_env)
        if password is None:
            request.aml_token_error = f"the Livy password variable {self.password_env} is not set in the kernel's environment"
            return request
        return HTTPBasicAuth(self.username, password)(request)

    def __hash__(self):
        return hash((self.url, self.username, self.__class__.__name__))
