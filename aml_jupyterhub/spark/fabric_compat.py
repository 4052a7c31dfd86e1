"""Microsoft Fabric Livy answers translated to the Apache Livy shapes sparkmagic expects (pure functions).

Fabric differs from Apache Livy: ``POST /sessions`` answers 202 and statements
200 (sparkmagic accepts only 201); the session state is in
``livyInfo.currentState`` (absent while the session is being acquired) and
includes ``submitting``/``not_submitted``; there is no ``log`` field and no
``/log`` endpoint; lists use ``items``; ids are GUIDs; statement states may be
capitalised (``Error``); and the create payload takes no ``kind``, ``pyFiles``,
``ttl``, ``idleTimeout`` or ``heartbeatTimeoutInSecond``.
"""

from __future__ import annotations

import re
from typing import Any

# Fabric states sparkmagic does not know, as the Apache Livy state that means the same to it.
SESSION_STATES = {
    None: "starting",
    "": "starting",
    "not_submitted": "starting",
    "submitting": "starting",
    "not_started": "starting",
}
NOT_FOR_FABRIC = ("kind", "heartbeatTimeoutInSecond", "pyFiles", "ttl", "idleTimeout", "proxyUser", "queue")
SESSION_PATH = re.compile(r"/sessions(?:/(?P<session>[^/]+)(?:/(?P<rest>.*))?)?$")


def route(path: str) -> tuple[str | None, str | None]:
    """``(session id, rest)`` of a Livy URL path: ``/sessions`` -> (None, None), ``.../sessions/x/statements`` -> (x, "statements")."""
    m = SESSION_PATH.search(path.rstrip("/"))
    if not m:
        return None, "?"
    return m.group("session"), m.group("rest")


def fabric_session_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The create payload without the fields Fabric's SessionRequest does not have."""
    return {k: v for k, v in payload.items() if k not in NOT_FOR_FABRIC}


def session_state(body: dict[str, Any]) -> str:
    info = body.get("livyInfo") or {}
    state = info.get("currentState") or body.get("state")
    state = state.lower() if isinstance(state, str) else state
    return SESSION_STATES.get(state, state)


def session_to_livy(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "state": session_state(body), "log": list(body.get("log") or []), "kind": body.get("kind", "pyspark")}


def sessions_to_livy(body: dict[str, Any]) -> dict[str, Any]:
    items = body.get("items") or body.get("sessions") or []
    sessions = [session_to_livy(s) for s in items]
    return {"from": 0, "total": body.get("totalCountOfMatchedItems", len(sessions)), "sessions": sessions}


def statement_to_livy(body: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    if isinstance(out.get("state"), str):
        out["state"] = out["state"].lower()
    output = out.get("output")
    if isinstance(output, dict) and output.get("status") == "error" and not isinstance(output.get("traceback"), list):
        out["output"] = {**output, "traceback": [str(output.get("traceback") or "")]}
    return out


def translate(method: str, path: str, status: int, body: Any) -> tuple[int, Any]:
    """Fabric's ``(status, body)`` for a successful Livy call, as Apache Livy would answer."""
    if not isinstance(body, dict):
        return status, body
    session, rest = route(path)
    if session is None and rest is None:
        if method == "POST" and status in (200, 201, 202):
            return 201, session_to_livy(body)
        if method == "GET":
            return status, sessions_to_livy(body)
    elif rest is None and method == "GET":
        return status, session_to_livy(body)
    elif rest == "statements" and method == "POST" and status in (200, 201, 202):
        return 201, statement_to_livy(body)
    elif rest == "statements" and method == "GET":
        return status, {**body, "statements": [statement_to_livy(s) for s in body.get("statements", [])]}
    elif rest and rest.startswith("statements/") and not rest.endswith("/cancel") and method == "GET":
        return status, statement_to_livy(body)
    return status, body


NO_LOG = (
    "Microsoft Fabric keeps no Livy session log (there is no /log endpoint). See the session in the Fabric "
    "Monitoring hub. Fabric ends sessions after about 20 minutes idle: restart the kernel to start a new one."
)
