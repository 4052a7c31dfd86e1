"""The hub API a compute instance calls while it starts (docs/token-broker.md).

``POST /hub/api/aml/instance-token`` with ``{"identity_token": <managed-identity token>}``:
the instance proves it is the compute this hub's spawner created and gets a
hub API token owned by the instance's user, with only the broker and
activity scopes for that user, for one hour (``instance_tokens``). Trusted
only if everything matches what the hub created and recorded: the hub's
tenant, the compute's resource id (``xms_mirid``), the identity object id
read back from ARM after create, the instance's ``createdOn`` read from ARM
now, and a server that is running or starting. Every refusal is a 403 and a
log line naming the reason (never the token).

``GET /hub/api/aml/instance-config?compute=<name>`` with that hub token: what
the instance sets up on every start (the user space's share and a
share-scoped SAS, Spark kernels' configuration), from the spawner that owns
the compute.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from jupyterhub import orm
from tornado import web

from .handlers import BrokerAPIHandler
from .id_token import IdTokenError, OpenIdConfiguration, hub_tenant, validate_instance_identity
from .instance_tokens import INSTANCE_TOKEN_SECONDS, issue_instance_token
from .request_body import json_fields

INSTANCE_TOKEN_USAGE = "Send {\"identity_token\": <the instance's managed-identity token for this hub's app>}."


def spawner_for_compute(db, compute_id: str) -> orm.Spawner | None:
    """The running or starting server whose (persisted) state names this compute resource id."""
    wanted = compute_id.rstrip("/").lower()
    for orm_spawner in db.query(orm.Spawner).filter(orm.Spawner.state.isnot(None), orm.Spawner.server_id.isnot(None)):
        if str((orm_spawner.state or {}).get("compute_id", "")).lower() == wanted:
            return orm_spawner
    return None


@dataclass(frozen=True)
class HubApp:
    """Whom instance identity tokens must be for: the hub's Entra app, and its tenant's signing keys."""

    oidc: OpenIdConfiguration
    client_id: str


class InstanceTokenHandler(BrokerAPIHandler):
    """Authenticated by the instance's identity token in the body, not by a hub token."""

    def initialize(self, hub_app: HubApp | None = None) -> None:
        self.hub_app = hub_app

    def _refuse(self, compute: str, reason: str) -> None:
        self.log.warning("Instance token refused for compute %s: %s", compute or "?", reason)
        raise web.HTTPError(403, f"Instance identity refused: {reason}.")

    async def post(self) -> None:
        hub_app = self.hub_app or HubApp(self.authenticator._oidc, self.authenticator.client_id)
        body = json_fields(self.request.body, {"identity_token": str}, INSTANCE_TOKEN_USAGE)
        identity_token = body["identity_token"]
        audiences = {hub_app.client_id, f"api://{hub_app.client_id}"}
        try:
            claims = await validate_instance_identity(identity_token, hub_app.oidc, audiences)
        except IdTokenError as e:
            self._refuse("", str(e))
        compute = str(claims["xms_mirid"]).rstrip("/").rsplit("/", 1)[-1]
        orm_spawner = spawner_for_compute(self.db, claims["xms_mirid"])
        if orm_spawner is None:
            self._refuse(compute, "no running server of this hub owns that compute instance")
        user = self.users[orm_spawner.user]
        spawner: Any = user.spawners[orm_spawner.name]
        if not spawner.active or spawner.pending == "stop" or not hasattr(spawner, "instance_identity_refusal"):
            self._refuse(compute, "its server is stopped or stopping")
        reason = await spawner.instance_identity_refusal(claims, await hub_tenant(hub_app.oidc))
        if reason:
            self._refuse(compute, reason)
        token = issue_instance_token(user, spawner.compute_name)
        self.log.info("Issued an instance token for %s (server %r, compute %s)", user.name, orm_spawner.name, compute)
        self.send_secret_json(
            {"token": token, "expires_at": int(time.time()) + INSTANCE_TOKEN_SECONDS, "user": user.name, "server": orm_spawner.name}
        )


class InstanceConfigHandler(BrokerAPIHandler):
    async def get(self) -> None:
        user = self.broker_user()
        compute = self.get_query_argument("compute", "")
        spawner = next((s for s in user.spawners.values() if compute and getattr(s, "compute_name", None) == compute), None)
        if spawner is None or not hasattr(spawner, "instance_config"):
            raise web.HTTPError(404, f"None of your servers runs on compute instance {compute!r}.")
        self.send_secret_json(await spawner.instance_config())


def instance_handlers(hub_app: HubApp | None = None) -> list:
    return [
        (r"/api/aml/instance-token", InstanceTokenHandler, {"hub_app": hub_app}),
        (r"/api/aml/instance-config", InstanceConfigHandler),
    ]


def configure_instance_api(c, *, tenant_id: str, client_id: str, authority_host: str = "https://login.microsoftonline.com", ca_certs: str | None = None) -> None:
    """The instance API for hubs that do not sign in with ``azuread-delegated`` (which brings it itself).

    ``client_id`` is the hub's Entra app: instances get managed-identity tokens for it.
    Also grants the broker scope (:func:`configure_token_broker`), which instance tokens carry.
    """
    from .handlers import configure_token_broker

    oidc = OpenIdConfiguration(f"{authority_host}/{tenant_id}/v2.0/.well-known/openid-configuration", ca_certs)
    c.JupyterHub.extra_handlers = [*list(c.JupyterHub.get("extra_handlers", [])), *instance_handlers(HubApp(oidc, client_id))]
    c.AMLSpawner.instance_audience = f"api://{client_id}"
    configure_token_broker(c)
