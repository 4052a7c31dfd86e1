"""The ``instances`` service: endpoints a compute instance reaches from inside.

``GET /MSI/auth?resource=...&api-version=2017-09-01`` with header
``secret: $MSI_SECRET`` is the instance's managed-identity endpoint as Azure
ML provides it (``MSI_ENDPOINT``/``MSI_SECRET``; azure-identity's
``ManagedIdentityCredential`` uses it unchanged). The token is for the
instance's system-assigned identity: ``oid`` its ``identity.principalId``,
``xms_mirid`` the instance's resource id. Answers in Azure ML's shape
(``expires_on`` as epoch seconds).
"""

from __future__ import annotations

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from ..core.tokens import audience_for, managed_identity_token


class ManagedIdentityToken(EmulatorHandler):
    def get(self) -> None:
        runtime = self.state.instances
        secret = self.request.headers.get("secret", "")
        machine = runtime.by_msi_secret(secret) if runtime is not None and secret else None
        if machine is None:
            raise ServiceError(401, "Unauthorized", "The 'secret' header is missing or does not belong to a running instance.")
        if not machine.principal_id:
            raise ServiceError(
                400, "IdentityNotFound", "No managed identity is assigned to this compute instance (create it with a system-assigned identity)."
            )
        resource = self.get_query_argument("resource", "")
        audience = audience_for(self.state, resource)
        if audience is None:
            raise ServiceError(400, "invalid_resource", f"AADSTS500011: The resource principal named {resource} was not found in the tenant.")
        token, lifetime = managed_identity_token(self.state, machine.principal_id, machine.tenant_id, machine.resource_id, audience)
        expires_on = int(self.state.now()) + lifetime
        self.set_header("Cache-Control", "no-store")
        self.send_json(
            200,
            {"access_token": token, "expires_on": str(expires_on), "resource": resource, "token_type": "Bearer", "client_id": machine.principal_id},
        )


def routes(state: EmulatorState) -> list:
    return [(r"/MSI/auth", ManagedIdentityToken, {"state": state})]
