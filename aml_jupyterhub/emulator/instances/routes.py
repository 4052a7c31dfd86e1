"""The ``instances`` service: endpoints a compute instance reaches from inside.

``GET /MSI/auth?resource=...&api-version=2017-09-01[&clientid=...]`` with header
``secret: $MSI_SECRET`` is the instance's managed-identity endpoint as Azure
ML provides it (``MSI_ENDPOINT``/``MSI_SECRET``). Who the token is for:

- ``clientid=$DEFAULT_IDENTITY_CLIENT_ID``: the instance's system-assigned
  identity (``oid`` its ``identity.principalId``, ``xms_mirid`` the
  instance's resource id);
- no ``clientid`` on an instance with SSO on (``enableSSO``, the default):
  the **assigned user** (a delegated token, no ``xms_mirid``);
- no ``clientid`` with SSO off: the system-assigned identity.

Answers in Azure ML's shape (``expires_on`` as epoch seconds). The rules and
their sources: docs/emulator-fidelity.md.
"""

from __future__ import annotations

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from ..core.tokens import audience_for, managed_identity_token, sso_user_token


class ManagedIdentityToken(EmulatorHandler):
    def get(self) -> None:
        runtime = self.state.instances
        secret = self.request.headers.get("secret", "")
        machine = runtime.by_msi_secret(secret) if runtime is not None and secret else None
        if machine is None:
            raise ServiceError(401, "Unauthorized", "The 'secret' header is missing or does not belong to a running instance.")
        resource = self.get_query_argument("resource", "")
        audience = audience_for(self.state, resource)
        if audience is None:
            raise ServiceError(400, "invalid_resource", f"AADSTS500011: The resource principal named {resource} was not found in the tenant.")
        client_id = self.get_query_argument("clientid", "")
        if client_id or not machine.sso:
            if not machine.principal_id or (client_id and client_id.lower() != machine.client_id.lower()):
                raise ServiceError(
                    400, "IdentityNotFound", "No managed identity with this client id is assigned to this compute instance."
                )
            token, lifetime = managed_identity_token(
                self.state, machine.principal_id, machine.client_id, machine.tenant_id, machine.resource_id, audience
            )
            answered_for = machine.client_id
        else:  # SSO: the signed-in (assigned) user
            user = self.state.config.user(machine.assigned_oid)
            if user is None:
                raise ServiceError(400, "UserNotFound", "This compute instance has no assigned user to sign in as.")
            token, lifetime = sso_user_token(self.state, user, audience)
            answered_for = ""
        expires_on = int(self.state.now()) + lifetime
        self.set_header("Cache-Control", "no-store")
        self.send_json(
            200,
            {"access_token": token, "expires_on": str(expires_on), "resource": resource, "token_type": "Bearer", "client_id": answered_for},
        )


def routes(state: EmulatorState) -> list:
    return [(r"/MSI/auth", ManagedIdentityToken, {"state": state})]
