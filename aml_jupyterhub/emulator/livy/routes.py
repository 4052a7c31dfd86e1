"""Apache Livy's REST API (interactive sessions) on the ``livy`` port, statements run by real local Spark.

Follows ``apache-livy/rest-api.md``: ``POST /sessions`` answers 201 with an
integer id and ``log``; ``GET /sessions[/{id}[/state|/log]]``; ``DELETE``
answers 200 ``{"msg": "deleted"}``; statements 201, then ``waiting|running|
available`` with Livy's ``output``. A live session with the same ``name``
-> 400 ``Duplicate session name``. Errors are ``{"msg": ...}`` as Livy's.
When the control API sets ``basic_username``/``basic_password``
(``PATCH /_emulator/livy/settings``), HTTP Basic is required (401 otherwise).

Deviations: no batches, no ``/completion``; ``ttl``/``idleTimeout``/``pyFiles``/
``conf`` are validated and recorded, not applied (one shared SparkSession);
cancel answers ``canceled`` but cannot stop a running statement; Scala/R
statements answer an error (:mod:`aml_jupyterhub.emulator.livy.executor`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.state import EmulatorState
from .model import LivySession, store

KINDS = ("spark", "pyspark", "sparkr", "sql")
LIST_FIELDS = ("jars", "pyFiles", "files", "archives")
DURATION = re.compile(r"^\d+(ms|s|m|min|h|d)?$")


def session_view(session: LivySession) -> dict[str, Any]:
    request = session.request
    return {
        "id": session.id,
        "name": session.name,
        "appId": f"local-{session.id}",
        "owner": session.owner or None,
        "proxyUser": request.get("proxyUser"),
        "state": session.state,
        "kind": session.kind,
        "appInfo": {"driverLogUrl": None, "sparkUiUrl": None},
        "log": session.log[-100:],
        "ttl": request.get("ttl"),
        "idleTimeout": request.get("idleTimeout"),
        **{k: request.get(k, []) for k in LIST_FIELDS},
        "conf": request.get("conf", {}),
    }


def validate_create(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ServiceError(400, "BadRequest", "Session request must be a JSON object.")
    kind = body.get("kind")
    if kind is not None and kind not in KINDS:
        raise ServiceError(400, "BadRequest", f"Invalid kind: {kind}")
    for key in LIST_FIELDS:
        if key in body and not (isinstance(body[key], list) and all(isinstance(x, str) for x in body[key])):
            raise ServiceError(400, "BadRequest", f"{key} must be a list of strings")
    conf = body.get("conf", {})
    if not isinstance(conf, dict) or not all(isinstance(v, str) for v in conf.values()):
        raise ServiceError(400, "BadRequest", "conf must be a map of string to string")
    for key in ("ttl", "idleTimeout"):
        if body.get(key) is not None and not (isinstance(body[key], str) and DURATION.match(body[key])):
            raise ServiceError(400, "BadRequest", f"Invalid {key}: {body[key]}")
    if body.get("name") is not None and not isinstance(body["name"], str):
        raise ServiceError(400, "BadRequest", "name must be a string")
    return body


class LivyHandler(EmulatorHandler):
    """Livy's error dialect: ``{"msg": "..."}``; optional HTTP Basic."""

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        return "application/json; charset=utf-8", json.dumps({"msg": error.message}).encode()

    async def prepare(self) -> None:
        await super().prepare()
        if self._finished:
            return
        settings = store(self.state).settings
        if settings.basic_username is None:
            return
        user = self._basic_user()
        if user != (settings.basic_username, settings.basic_password):
            raise ServiceError(401, "Unauthorized", "Unauthorized", {"WWW-Authenticate": 'Basic realm="livy"'})
        self.principal = user[0]

    def _basic_user(self) -> tuple[str, str] | None:
        auth = self.request.headers.get("Authorization", "")
        if not auth.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user, password

    def session(self, session_id: str) -> LivySession:
        found = store(self.state).find("apache", session_id)
        if found is None:
            raise ServiceError(404, "NotFound", f"Session '{session_id}' not found.")
        return found

    def owner(self) -> str:
        return "" if self.principal == "anonymous" else self.principal


class Sessions(LivyHandler):
    def get(self) -> None:
        sessions = sorted(store(self.state).all("apache"), key=lambda s: s.id)
        start = int(self.get_query_argument("from", "0"))
        size = int(self.get_query_argument("size", "100"))
        page = sessions[start:start + size]
        self.send_json(200, {"from": start, "total": len(sessions), "sessions": [session_view(s) for s in page]})

    def post(self) -> None:
        body = validate_create(self.json_body())
        livy = store(self.state)
        with livy.lock:
            if body.get("name") and livy.live_named("apache", body["name"]):
                raise ServiceError(400, "BadRequest", f"Duplicate session name: Some({body['name']})")
            session = livy.create("apache", self.owner(), body)
        self.send_json(201, session_view(session), {"Location": f"/sessions/{session.id}"})


class Session(LivyHandler):
    def get(self, session_id: str) -> None:
        self.send_json(200, session_view(self.session(session_id)))

    def delete(self, session_id: str) -> None:
        store(self.state).delete(self.session(session_id))
        self.send_json(200, {"msg": "deleted"})


class SessionState(LivyHandler):
    def get(self, session_id: str) -> None:
        session = self.session(session_id)
        self.send_json(200, {"id": session.id, "state": session.state})


class SessionLog(LivyHandler):
    def get(self, session_id: str) -> None:
        session = self.session(session_id)
        start = int(self.get_query_argument("from", "0"))
        size = int(self.get_query_argument("size", "100"))
        self.send_json(200, {"id": session.id, "from": start, "total": len(session.log),
                             "log": session.log[start:start + size]})


class Statements(LivyHandler):
    def get(self, session_id: str) -> None:
        session = self.session(session_id)
        statements = [s.view(fabric=False) for s in session.statements]
        self.send_json(200, {"total_statements": len(statements), "statements": statements})

    def post(self, session_id: str) -> None:
        session = self.session(session_id)
        body = self.json_body()
        if not isinstance(body, dict) or not isinstance(body.get("code"), str):
            raise ServiceError(400, "BadRequest", "code is required")
        if session.state not in ("idle", "busy"):
            raise ServiceError(400, "BadRequest", f"Session {session.id} is in state {session.state}; statements need idle.")
        kind = body.get("kind")
        if kind is not None and kind not in KINDS:
            raise ServiceError(400, "BadRequest", f"Invalid kind: {kind}")
        statement = store(self.state).run(session, body["code"], kind)
        self.send_json(201, statement.view(fabric=False),
                       {"Location": f"/sessions/{session.id}/statements/{statement.id}"})


class StatementItem(LivyHandler):
    def get(self, session_id: str, statement_id: str) -> None:
        session = self.session(session_id)
        index = int(statement_id)
        if index >= len(session.statements):
            raise ServiceError(404, "NotFound", f"Statement '{statement_id}' not found in session '{session_id}'.")
        self.send_json(200, session.statements[index].view(fabric=False))


class StatementCancel(LivyHandler):
    def post(self, session_id: str, statement_id: str) -> None:
        self.session(session_id)
        self.send_json(200, {"msg": "canceled"})


def routes(state: EmulatorState) -> list:
    kw = {"state": state}
    return [
        (r"/sessions/?", Sessions, kw),
        (r"/sessions/(\d+)", Session, kw),
        (r"/sessions/(\d+)/state", SessionState, kw),
        (r"/sessions/(\d+)/log", SessionLog, kw),
        (r"/sessions/(\d+)/statements", Statements, kw),
        (r"/sessions/(\d+)/statements/(\d+)", StatementItem, kw),
        (r"/sessions/(\d+)/statements/(\d+)/cancel", StatementCancel, kw),
    ]

