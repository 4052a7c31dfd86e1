"""sparkmagic authenticator ``AmlEntraBearer``: ``Authorization: Bearer <delegated Fabric token>`` on every request.

sparkmagic builds it once per kernel and passes it to requests as ``auth=``, so
``__call__`` runs for every request and reads a fresh token from the shared
:class:`~.token_source.BearerTokenProvider`. If the source fails, the request
is marked and :class:`~.livy_http.LivyAdapter` answers it with an explanation
instead of sending it unauthenticated.
"""

from __future__ import annotations

from sparkmagic.auth.customauth import Authenticator

from .config import SECTION
from .runtime import plugin_settings
from .token_source import TokenSourceError, shared_provider


class EntraBearerAuth(Authenticator):
    def __init__(self, parsed_attributes=None):
        super().__init__(parsed_attributes)
        settings = plugin_settings()
        self.provider = shared_provider(
            settings.get("token_source") or "aml_jupyterhub.tokens:get_token", settings.get("token_resource") or "fabric"
        )

    def __call__(self, request):
        try:
            request.headers["Authorization"] = f"Bearer {self.provider.token()}"
        except TokenSourceError as e:
            request.headers.pop("Authorization", None)
            request.aml_token_error = str(e)
        return request

    def __hash__(self):
        return hash((self.url, SECTION, self.__class__.__name__))
