"""The hub API a compute instance calls while it starts (docs/token-broker.md).

``POST /hub/api/aml/instance-token`` with ``{"identity_token": <managed-identity token>}``:
the instance proves it is the compute this hub's spawner created (the token's
``xms_mirid`` is that compute's resource id) and gets a hub API token owned
by the instance's user, with only the broker scope for that user, for one
hour. Nothing secret ever sits in the instance's configuration.

``GET /hub/api/aml/instance-config?compute=<name>`` with that hub token: what
the instance sets up on every start (the user space's share and a
share-scoped SAS, Spark kernels' configuration), from the spawner that owns
the compute.
"""

from __future__ import annotations

import json
import time

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from tornado import web

from .handlers import BROKER_SCOPE, BrokerAPIHandler
from .id_token import IdTokenError, validate_instance_identity

INSTANCE_TOKEN_SECONDS = 3600


def spawner_for_compute(db, compute_id: str) -> orm.Spawner | None:
    """The server whose (persisted) state names this compute resource id."""
    wanted = compute_id.lower()
    for orm_spawner in db.query(orm.Spawner).filter(orm.Spawner.state.isnot(None)):
        if str((orm_spawner.state or {}).get("compute_id", "")).lower() == wanted:
            return orm_spawner
    return None


class InstanceTokenHandler(APIHandler):
    async def post(self) -> None:
        authenticator = self.authenticator
        try:
            identity_token = json.loads(self.request.body or b"{}").get("identity_token", "")
        except ValueError:
            identity_token = ""
        if not identity_token:
            raise web.HTTPError(400, "Send {\"identity_token\": <the instance's managed-identity token for this hub's app>}.")
        audiences = {authenticator.client_id, f"api://{authenticator.client_id}"}
        try:
            claims = await validate_instance_identity(identity_token, authenticator._oidc, audiences)
        except IdTokenError as e:
            raise web.HTTPError(403, f"Instance identity refused: {e}") from None
        orm_spawner = spawner_for_compute(self.db, claims["xms_mirid"])
        if orm_spawner is None:
            self.log.warning("Instance identity for %s: no server of this hub owns it", claims["xms_mirid"])
            raise web.HTTPError(403, "No server of this hub owns that compute instance.")
        user = self.users[orm_spawner.user]
        token = user.new_api_token(
            note=f"aml-jupyterhub instance {claims['xms_mirid'].rsplit('/', 1)[-1]}",
            expires_in=INSTANCE_TOKEN_SECONDS,
            scopes=[f"{BROKER_SCOPE}!user={user.name}"],
        )
        self.log.info("Issued an instance token for %s (server %r)", user.name, orm_spawner.name)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")
        self.finish(
            json.dumps(
                {"token": token, "expires_at": int(time.time()) + INSTANCE_TOKEN_SECONDS, "user": user.name, "server": orm_spawner.name}
            )
        )


class InstanceConfigHandler(BrokerAPIHandler):
    async def get(self) -> None:
        user = self.broker_user()
        compute = self.get_query_argument("compute", "")
        spawner = next((s for s in user.spawners.values() if compute and getattr(s, "compute_name", None) == compute), None)
        if spawner is None or not hasattr(spawner, "instance_config"):
            raise web.HTTPError(404, f"None of your servers runs on compute instance {compute!r}.")
        self.send_secret_json(await spawner.instance_config())


def instance_handlers() -> list:
    return [(r"/api/aml/instance-token", InstanceTokenHandler), (r"/api/aml/instance-config", InstanceConfigHandler)]
