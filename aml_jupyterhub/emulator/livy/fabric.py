"""Microsoft Fabric's Livy API (``api.fabric.microsoft.com``) on the ``fabric`` port, statements run by real local Spark.

Base path ``/v1/workspaces/{ws}/lakehouses/{lh}/livyApi/versions/{version}``
(``livyapi`` in any case; ws and lh must be GUIDs). Per ``fabric-livy/swagger.yaml``:

- ``POST sessions`` -> **202** with a GUID id; ``GET sessions`` -> ``{"items": [...]}``;
  ``GET``/``DELETE sessions/{id}`` -> 200; ``POST sessions/{id}/reset-timeout`` -> 204;
- ``POST sessions/{id}/statements`` -> **200**; ``GET .../statements[/{n}]``; ``.../cancel``;
- the session state is in ``livyInfo.currentState`` and nowhere else. While the
  session is acquired, the first ``fabric_acquire_polls`` answers have no
  ``livyInfo``, then ``not_submitted``, then ``submitting``; then ``starting``
  until Spark is up, ``idle``/``busy``, ``dead`` once idle longer than
  ``fabric_idle_seconds`` (emulated clock; default 20 min);
- no ``log`` field and no ``/log`` endpoint (404); create payloads with
  ``kind``, ``pyFiles``, ``ttl``, ``idleTimeout`` or ``heartbeatTimeoutInSecond``
  are refused (400), since a SessionRequest has no such fields.

Every call needs a bearer token for the Fabric resource (audience, signature,
lifetime: 401 ``TokenExpired``/``InvalidToken``) carrying ``Code.AccessFabric.All``
(required for every Livy API call) and ``Lakehouse.Execute.All`` (403
``InsufficientScopes``); sources in docs/emulator-fidelity.md. Errors are Fabric's ``{"requestId", "errorCode",
"message"}`` with ``x-ms-public-api-error-code``. Sessions are visible only to
the user who created them (404 ``EntityNotFound`` for others).

What is verified and what is not (error codes for a dead session and unknown
fields, the fixed acquisition sequence, workspace roles and the tenant
setting not modelled): docs/emulator-fidelity.md.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.keys import TokenError
from ..core.state import EmulatorState
from ..core.tokens import Caller, require_bearer
from .model import LivySession, iso, store

BASE = r"/v1/workspaces/([^/]+)/lakehouses/([^/]+)/(?i:livyapi)/versions/([^/]+)"
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
REQUIRED_SCOPES = frozenset({"Code.AccessFabric.All", "Lakehouse.Execute.All"})
NOT_IN_SESSION_REQUEST = ("kind", "pyFiles", "ttl", "idleTimeout", "heartbeatTimeoutInSecond", "proxyUser", "queue")
ACQUIRE_STATES = (None, "not_submitted", "submitting")
FABRIC_ERROR_CODES = {400: "InvalidInput", 401: "Unauthorized", 403: "Forbidden", 404: "EntityNotFound",
                      429: "RequestBlocked", 500: "InternalServerError", 503: "ServiceUnavailable"}


def livy_info(session: LivySession, state: str | None) -> dict[str, Any]:
    times = {f"{name}At": iso(t) for name, t in session.state_times.items() if name in
             ("starting", "idle", "busy", "dead", "killed", "error")}
    return {**times, "currentState": state, "jobCreationRequest": dict(session.request)}


def session_view(session: LivySession, advance: bool = True) -> dict[str, Any]:
    """The SessionResponse; each GET during acquisition moves one step through :data:`ACQUIRE_STATES`."""
    body: dict[str, Any] = {
        "id": session.id, "name": session.name, "appId": None, "appInfo": {}, "artifactId": session.lakehouse,
        "jobType": "SparkSession", "submitterId": session.owner, "submitterName": session.owner_name,
        "tags": session.request.get("tags") or {}, "result": "Uncertain", "cancellationReason": None,
    }
    if session.polls < session.acquire_polls:
        phase = ACQUIRE_STATES[min(session.polls, len(ACQUIRE_STATES) - 1)]
        if advance:
            session.polls += 1
        body["fabricSessionStateInfo"] = {"state": "acquiringSession"}
        if phase is not None:
            body["livyInfo"] = livy_info(session, phase)
        return body
    body["appId"] = f"application_{abs(hash(session.id)) % 10**13}_0001"
    body["livyInfo"] = livy_info(session, session.state)
    return body


class FabricHandler(EmulatorHandler):
    """Fabric's error dialect and bearer validation."""

    caller: Caller

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("RequestId", self.request_id)

    def default_error_code(self, status: int) -> str:
        return FABRIC_ERROR_CODES.get(status, "UnknownError")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        self.set_header("x-ms-public-api-error-code", error.code)
        body = {"requestId": self.request_id, "errorCode": error.code, "message": error.message}
        return "application/json; charset=utf-8", json.dumps(body).encode()

    def authenticate(self, workspace: str, lakehouse: str) -> Caller:
        try:
            caller = require_bearer(self.state, self.request.headers.get("Authorization"), "fabric")
        except TokenError as e:
            if e.expired:
                raise ServiceError(401, "TokenExpired", "Access token has expired, resubmit with a new access token",
                                   {"WWW-Authenticate": "Bearer"}) from None
            message = "Access token is missing" if str(e) == "missing" else f"Access token is invalid: {e}"
            raise ServiceError(401, "InvalidToken", message, {"WWW-Authenticate": "Bearer"}) from None
        self.principal = caller.name
        if not REQUIRED_SCOPES <= caller.scopes | caller.roles:
            raise ServiceError(403, "InsufficientScopes",
                               "The caller does not have sufficient scopes to perform this operation")
        for value, what in ((workspace, "workspaceId"), (lakehouse, "lakehouseId")):
            if not GUID.match(value):
                raise ServiceError(400, "InvalidParameter", f"The {what} '{value}' is not a valid GUID.")
        self.caller = caller
        return caller

    def session(self, ws: str, lh: str, session_id: str) -> LivySession:
        caller = self.authenticate(ws, lh)
        found = store(self.state).find("fabric", session_id)
        if found is None or found.owner != caller.oid or (found.workspace, found.lakehouse) != (ws, lh):
            raise ServiceError(404, "EntityNotFound", f"Session {session_id} was not found.")
        return found


class Sessions(FabricHandler):
    def post(self, ws: str, lh: str, version: str) -> None:
        caller = self.authenticate(ws, lh)
        body = self.json_body()
        if not isinstance(body, dict):
            raise ServiceError(400, "InvalidInput", "The request payload must be a SessionRequest object.")
        bad = sorted(k for k in body if k in NOT_IN_SESSION_REQUEST)
        if bad:
            raise ServiceError(400, "InvalidInput", f"Unknown SessionRequest field(s): {', '.join(bad)}")
        conf = body.get("conf", {})
        if not isinstance(conf, dict) or not all(isinstance(v, str) for v in conf.values()):
            raise ServiceError(400, "InvalidInput", "conf must map strings to strings")
        livy = store(self.state)
        session = livy.create("fabric", caller.oid, body, workspace=ws, lakehouse=lh, owner_name=caller.name,
                              acquire_polls=livy.settings.fabric_acquire_polls)
        self.send_json(202, session_view(session, advance=False))

    def get(self, ws: str, lh: str, version: str) -> None:
        caller = self.authenticate(ws, lh)
        mine = [s for s in store(self.state).all("fabric") if s.owner == caller.oid and (s.workspace, s.lakehouse) == (ws, lh)]
        items = [session_view(s, advance=False) for s in mine]
        self.send_json(200, {"items": items, "totalCountOfMatchedItems": len(items), "pageSize": len(items)})


class Session(FabricHandler):
    def get(self, ws: str, lh: str, version: str, session_id: str) -> None:
        self.send_json(200, session_view(self.session(ws, lh, session_id)))

    def delete(self, ws: str, lh: str, version: str, session_id: str) -> None:
        store(self.state).delete(self.session(ws, lh, session_id))
        self.set_status(200)
        self.finish()


class ResetTimeout(FabricHandler):
    def post(self, ws: str, lh: str, version: str, session_id: str) -> None:
        session = self.session(ws, lh, session_id)
        store(self.state).touch(session)
        self.set_status(204)
        self.finish()


class Statements(FabricHandler):
    def get(self, ws: str, lh: str, version: str, session_id: str) -> None:
        session = self.session(ws, lh, session_id)
        statements = [s.view(fabric=True) for s in session.statements]
        self.send_json(200, {"statements": statements, "total_statements": len(statements)})

    def post(self, ws: str, lh: str, version: str, session_id: str) -> None:
        session = self.session(ws, lh, session_id)
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise ServiceError(400, "InvalidInput", "code is required")
        if session.state not in ("idle", "busy") or session.polls < session.acquire_polls:
            raise ServiceError(400, "SessionNotActive", f"Session {session.id} is not active (state {session.state}).")
        statement = store(self.state).run(session, body["code"], body.get("kind") or "pyspark")
        self.send_json(200, statement.view(fabric=True))


class StatementItem(FabricHandler):
    def get(self, ws: str, lh: str, version: str, session_id: str, statement_id: str) -> None:
        session = self.session(ws, lh, session_id)
        index = int(statement_id)
        if index >= len(session.statements):
            raise ServiceError(404, "EntityNotFound", f"Statement {statement_id} was not found.")
        self.send_json(200, session.statements[index].view(fabric=True))


class StatementCancel(FabricHandler):
    def post(self, ws: str, lh: str, version: str, session_id: str, statement_id: str) -> None:
        self.session(ws, lh, session_id)
        self.send_json(200, {"msg": "canceled"})


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (BASE + r"/sessions/?", Sessions, kw),
        (BASE + r"/sessions/([^/]+)", Session, kw),
        (BASE + r"/sessions/([^/]+)/reset-timeout", ResetTimeout, kw),
        (BASE + r"/sessions/([^/]+)/statements", Statements, kw),
        (BASE + r"/sessions/([^/]+)/statements/(\d+)", StatementItem, kw),
        (BASE + r"/sessions/([^/]+)/statements/(\d+)/cancel", StatementCancel, kw),
    ]
