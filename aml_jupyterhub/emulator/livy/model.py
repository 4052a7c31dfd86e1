"""Emulated Livy sessions and statements, shared by the Apache Livy and Fabric flavours.

Sessions live in ``state.runtime["livy"]`` (not persisted: a session's Python
namespace cannot be). A reset forgets them; the shared SparkSession stays
(:mod:`aml_jupyterhub.emulator.livy.executor`). Apache Livy sessions have integer ids, Fabric sessions
GUIDs. Times are on the emulated clock, so advancing it ages Fabric sessions
toward their idle expiry.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core.state import EmulatorState
from . import executor as livy_executor


@dataclass
class LivySettings:
    """Changed at run time with ``PATCH /_emulator/livy/settings``; a reset restores the defaults."""

    fabric_idle_seconds: float = 1200.0  # Fabric ends a session after ~20 min without statements
    fabric_acquire_polls: int = 3  # GETs answered before Spark states (no livyInfo, not_submitted, submitting)
    basic_username: str | None = None  # Apache Livy: require HTTP Basic when set
    basic_password: str | None = None


@dataclass
class Statement:
    id: int
    code: str
    kind: str
    state: str = "waiting"
    output: dict[str, Any] | None = None
    started: int = 0
    completed: int = 0

    def view(self, fabric: bool) -> dict[str, Any]:
        body = {"id": self.id, "code": self.code, "state": self.state, "output": self.output,
                "progress": 1.0 if self.state == "available" else 0.0}
        if fabric:
            body["sourceId"] = None
        else:
            body.update(started=self.started, completed=self.completed)
        return body


@dataclass
class LivySession:
    id: Any
    flavour: str  # "apache" | "fabric"
    name: str | None
    owner: str
    request: dict[str, Any]
    created: float
    last_activity: float
    state: str = "starting"  # starting | idle | busy | error | dead | killed
    statements: list[Statement] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    namespace: dict[str, Any] = field(default_factory=livy_executor.new_namespace)
    polls: int = 0
    state_times: dict[str, float] = field(default_factory=dict)
    workspace: str = ""
    lakehouse: str = ""
    owner_name: str = ""
    acquire_polls: int = 0  # Fabric: GETs answered with acquisition states before Spark states

    @property
    def live(self) -> bool:
        return self.state not in ("dead", "killed", "error", "success")

    @property
    def kind(self) -> str:
        return str(self.request.get("kind") or "pyspark")


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


class LivyStore:
    """Every emulated Livy session of both flavours, keyed by ``(flavour, str(id))``."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.settings = LivySettings()
        self.sessions: dict[tuple[str, str], LivySession] = {}
        self._next_id = 0
        self.lock = threading.RLock()

    # -- lifecycle --------------------------------------------------------------
    def create(self, flavour: str, owner: str, request: dict[str, Any], **where: Any) -> LivySession:
        now = self.state.now()
        with self.lock:
            if flavour == "apache":
                session_id: Any = self._next_id
                self._next_id += 1
            else:
                session_id = str(uuid.uuid4())
            session = LivySession(session_id, flavour, request.get("name"), owner, request, now, now, **where)
            session.log.append("stdout: ")
            session.log.append(f"Starting local Spark for session {session_id}")
            session.state_times["starting"] = now
            self.sessions[(flavour, str(session_id))] = session
        livy_executor.start(session.namespace).add_done_callback(lambda f: self._started(session, f))
        return session

    def _started(self, session: LivySession, future) -> None:
        with self.lock:
            if session.state != "starting":
                return
            error = future.exception()
            if error is not None:
                session.log.append(f"stderr: Spark failed to start: {type(error).__name__}: {error}")
                self._set_state(session, "error")
            else:
                session.log.append("SparkSession available as 'spark'.")
                self._set_state(session, "idle")

    def _set_state(self, session: LivySession, state: str) -> None:
        session.state = state
        session.state_times[state] = self.state.now()

    def find(self, flavour: str, session_id: str) -> LivySession | None:
        with self.lock:
            session = self.sessions.get((flavour, session_id))
            if session is not None:
                self.expire_if_idle(session)
            return session

    def all(self, flavour: str | None = None) -> list[LivySession]:
        with self.lock:
            found = [s for s in self.sessions.values() if flavour is None or s.flavour == flavour]
            for s in found:
                self.expire_if_idle(s)
            return found

    def live_named(self, flavour: str, name: str) -> LivySession | None:
        return next((s for s in self.all(flavour) if s.name == name and s.live), None)

    def delete(self, session: LivySession) -> None:
        with self.lock:
            self._set_state(session, "killed")
            self.sessions.pop((session.flavour, str(session.id)), None)

    def expire_if_idle(self, session: LivySession) -> None:
        """Fabric ends idle sessions (``fabric_idle_seconds`` on the emulated clock)."""
        if session.flavour == "fabric" and session.state == "idle":
            if self.state.now() - session.last_activity > self.settings.fabric_idle_seconds:
                session.log.append("Session ended after being idle.")
                self._set_state(session, "dead")

    def touch(self, session: LivySession) -> None:
        session.last_activity = self.state.now()

    # -- statements ---------------------------------------------------------------
    def run(self, session: LivySession, code: str, kind: str | None) -> Statement:
        with self.lock:
            statement = Statement(len(session.statements), code, kind or session.kind, state="running",
                                  started=int(time.time() * 1000))
            session.statements.append(statement)
            self.touch(session)
            if session.state == "idle":
                self._set_state(session, "busy")
        livy_executor.submit(session.namespace, code, statement.kind, statement.id + 1).add_done_callback(
            lambda f: self._finished(session, statement, f)
        )
        return statement

    def _finished(self, session: LivySession, statement: Statement, future) -> None:
        with self.lock:
            error = future.exception()
            statement.output = future.result() if error is None else {
                "status": "error", "execution_count": statement.id + 1, "ename": type(error).__name__,
                "evalue": str(error), "traceback": []}
            statement.state = "available"
            statement.completed = int(time.time() * 1000)
            self.touch(session)
            if session.state == "busy" and all(s.state == "available" for s in session.statements):
                self._set_state(session, "idle")

    # -- views ----------------------------------------------------------------------
    def describe(self) -> list[dict[str, Any]]:
        """For the control API: every session, without namespaces."""
        return [
            {"id": s.id, "flavour": s.flavour, "name": s.name, "owner": s.owner, "state": s.state,
             "request": s.request, "statements": len(s.statements), "last_activity": s.last_activity}
            for s in self.all()
        ]

    def settings_dict(self) -> dict[str, Any]:
        return asdict(self.settings)


def store(state: EmulatorState) -> LivyStore:
    """The state's Livy store (a new, empty one after a reset)."""
    found = state.runtime.get("livy")
    if found is None:
        found = state.runtime["livy"] = LivyStore(state)
    return found
