"""The emulated Apache Livy and Fabric Livy services over raw HTTPS: shapes, status codes, auth, expiry."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable

import pytest
import requests

from aml_jupyterhub.emulator.livy.model import store
from support.hub import wait_for
from support.spark_fixtures import FABRIC_SCOPE

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
def http(ca_bundle) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
    session.verify = ca_bundle
    return session


@pytest.fixture
def livy(emulator, http, warm_spark, livy_control) -> Callable[..., requests.Response]:
    def call(method: str, path: str, **kwargs) -> requests.Response:
        return http.request(method, emulator.endpoints["livy"] + path, timeout=30, **kwargs)

    return call


@pytest.fixture
def fabric(emulator, http, warm_spark, livy_control) -> Callable[..., requests.Response]:
    base = f"{emulator.endpoints['fabric']}/v1/workspaces/{uuid.uuid4()}/lakehouses/{uuid.uuid4()}/livyApi/versions/2023-12-01"
    tokens: dict[tuple[str, str], str] = {}

    def call(method: str, path: str, user: str = "alice@contoso.example", scope: str = FABRIC_SCOPE,
             token: str | None = None, **kwargs) -> requests.Response:
        if token is None:
            token = tokens.setdefault((user, scope), livy_control.mint_token(user, scope))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.request(method, base + path, headers=headers, timeout=30, **kwargs)

    return call


def until(call: Callable[[], requests.Response], predicate: Callable[[dict], bool]) -> dict:
    """Poll ``call`` until its JSON body satisfies ``predicate``; returns that body."""

    def check() -> dict | None:
        body = call().json()
        return body if predicate(body) else None

    return wait_for(check, 60, 0.05, "a Livy state")


def test_apache_livy_session_lifecycle(livy):
    name = f"t-{uuid.uuid4().hex[:8]}"
    created = livy("POST", "/sessions", json={"kind": "pyspark", "name": name, "conf": {"a": "b"}})
    assert created.status_code == 201
    session = created.json()
    assert isinstance(session["id"], int) and isinstance(session["log"], list) and session["state"] == "starting"
    assert created.headers["Location"] == f"/sessions/{session['id']}"

    duplicate = livy("POST", "/sessions", json={"name": name})
    assert duplicate.status_code == 400 and duplicate.json() == {"msg": f"Duplicate session name: Some({name})"}

    until(lambda: livy("GET", f"/sessions/{session['id']}"), lambda b: b["state"] == "idle")
    statement = livy("POST", f"/sessions/{session['id']}/statements", json={"code": "print('hi')\n6 * 7"})
    assert statement.status_code == 201 and statement.json()["state"] in ("waiting", "running", "available")
    done = until(lambda: livy("GET", f"/sessions/{session['id']}/statements/0"), lambda b: b["state"] == "available")
    assert done["output"] == {"status": "ok", "execution_count": 1, "data": {"text/plain": "hi\n42"}}

    listed = livy("GET", "/sessions").json()
    assert session["id"] in [s["id"] for s in listed["sessions"]] and listed["total"] >= 1
    assert livy("GET", f"/sessions/{session['id']}/state").json() == {"id": session["id"], "state": "idle"}
    assert livy("DELETE", f"/sessions/{session['id']}").json() == {"msg": "deleted"}
    gone = livy("GET", f"/sessions/{session['id']}")
    assert gone.status_code == 404 and gone.json() == {"msg": f"Session '{session['id']}' not found."}
    # the name is free again once the session is gone
    again = livy("POST", "/sessions", json={"name": name})
    assert again.status_code == 201
    livy("DELETE", f"/sessions/{again.json()['id']}")


def test_apache_livy_errors_are_livy_statement_errors(livy):
    sid = livy("POST", "/sessions", json={}).json()["id"]
    until(lambda: livy("GET", f"/sessions/{sid}"), lambda b: b["state"] == "idle")
    livy("POST", f"/sessions/{sid}/statements", json={"code": "def f():\n    raise KeyError('missing')\nf()"})
    done = until(lambda: livy("GET", f"/sessions/{sid}/statements/0"), lambda b: b["state"] == "available")
    output = done["output"]
    assert output["status"] == "error" and output["ename"] == "KeyError" and output["evalue"] == "'missing'"
    assert output["traceback"][0] == "Traceback (most recent call last):\n"
    assert all("livy_executor" not in line for line in output["traceback"])  # only the user's frames
    assert livy("POST", "/sessions", json={"kind": "cobol"}).status_code == 400
    livy("DELETE", f"/sessions/{sid}")


def test_statements_run_off_the_event_loop(emulator, livy):
    sid = livy("POST", "/sessions", json={}).json()["id"]
    until(lambda: livy("GET", f"/sessions/{sid}"), lambda b: b["state"] == "idle")
    gate = threading.Event()
    emulator.call(lambda: store(emulator.state).find("apache", str(sid)).namespace.update(gate=gate))
    livy("POST", f"/sessions/{sid}/statements", json={"code": "gate.wait(30)"})
    try:
        # the statement blocks its worker thread; the emulator still answers
        assert livy("GET", f"/sessions/{sid}").json()["state"] == "busy"
        assert livy("GET", f"/sessions/{sid}/statements/0").json()["state"] == "running"
    finally:
        gate.set()
    done = until(lambda: livy("GET", f"/sessions/{sid}/statements/0"), lambda b: b["state"] == "available")
    assert done["output"]["data"]["text/plain"] == "True"
    livy("DELETE", f"/sessions/{sid}")


def test_fabric_session_shapes_and_acquisition(fabric):
    created = fabric("POST", "/sessions", json={"name": "s1", "conf": {"spark.x": "1"}})
    assert created.status_code == 202
    body = created.json()
    assert "livyInfo" not in body and "state" not in body and "log" not in body
    sid = body["id"]
    assert re.fullmatch(GUID, sid)
    early = fabric("POST", f"/sessions/{sid}/statements", json={"code": "1"})
    assert early.status_code == 400 and early.json()["errorCode"] == "SessionNotActive"
    seen = [fabric("GET", f"/sessions/{sid}").json().get("livyInfo", {}).get("currentState") for _ in range(3)]
    assert seen == [None, "not_submitted", "submitting"]
    until(lambda: fabric("GET", f"/sessions/{sid}"), lambda b: b["livyInfo"]["currentState"] == "idle")

    statement = fabric("POST", f"/sessions/{sid}/statements", json={"code": "spark.range(4).count()", "kind": "pyspark"})
    assert statement.status_code == 200 and statement.json()["id"] == 0
    done = until(lambda: fabric("GET", f"/sessions/{sid}/statements/0"), lambda b: b["state"] == "available")
    assert done["output"]["data"] == {"text/plain": "4"}

    listed = fabric("GET", "/sessions").json()
    assert [s["id"] for s in listed["items"]] == [sid] and listed["totalCountOfMatchedItems"] == 1
    assert fabric("GET", f"/sessions/{sid}/log").status_code == 404  # Fabric has no log endpoint
    refused = fabric("POST", "/sessions", json={"kind": "pyspark", "pyFiles": ["/a.whl"]})
    assert refused.status_code == 400 and "kind, pyFiles" in refused.json()["message"]
    assert fabric("DELETE", f"/sessions/{sid}").status_code == 200
    assert fabric("GET", f"/sessions/{sid}").status_code == 404


def test_fabric_auth_errors(fabric, livy_control):
    missing = fabric("GET", "/sessions", token="")
    assert missing.status_code == 401 and missing.json()["errorCode"] == "InvalidToken"
    assert missing.headers["x-ms-public-api-error-code"] == "InvalidToken"
    assert set(missing.json()) == {"requestId", "errorCode", "message"}

    wrong_audience = fabric("GET", "/sessions", scope="https://storage.azure.com/user_impersonation")
    assert wrong_audience.status_code == 401 and "audience" in wrong_audience.json()["message"]

    short = livy_control.mint_token("alice@contoso.example", FABRIC_SCOPE, lifetime=60)
    livy_control.advance_clock(120)
    expired = fabric("GET", "/sessions", token=short)
    assert expired.status_code == 401 and expired.json()["errorCode"] == "TokenExpired"

    read_only = fabric("GET", "/sessions", scope="https://api.fabric.microsoft.com/Lakehouse.Read.All")
    assert read_only.status_code == 403 and read_only.json()["errorCode"] == "InsufficientScopes"
    # Code.AccessFabric.All is required for every Livy API operation, Lakehouse scopes or not.
    lakehouse_only = fabric("GET", "/sessions", scope="https://api.fabric.microsoft.com/Lakehouse.Execute.All")
    assert lakehouse_only.status_code == 403 and lakehouse_only.json()["errorCode"] == "InsufficientScopes"

    sid = fabric("POST", "/sessions", json={}).json()["id"]
    assert fabric("GET", f"/sessions/{sid}", user="bob@contoso.example").status_code == 404  # not bob's
    assert fabric("GET", "/sessions", user="bob@contoso.example").json()["items"] == []


def test_fabric_sessions_expire_when_idle(fabric, livy_control):
    livy_control.livy_settings(fabric_acquire_polls=0, fabric_idle_seconds=600)
    sid = fabric("POST", "/sessions", json={}).json()["id"]
    until(lambda: fabric("GET", f"/sessions/{sid}"), lambda b: b["livyInfo"]["currentState"] == "idle")
    livy_control.advance_clock(500)
    assert fabric("POST", f"/sessions/{sid}/reset-timeout").status_code == 204
    livy_control.advance_clock(500)  # 1000 s since creation, 500 since the reset: still alive
    assert fabric("GET", f"/sessions/{sid}").json()["livyInfo"]["currentState"] == "idle"
    livy_control.advance_clock(200)
    dead = fabric("GET", f"/sessions/{sid}").json()["livyInfo"]
    assert dead["currentState"] == "dead" and "deadAt" in dead
    refused = fabric("POST", f"/sessions/{sid}/statements", json={"code": "1"})
    assert refused.status_code == 400 and refused.json()["errorCode"] == "SessionNotActive"


def test_injected_faults_use_fabric_and_livy_dialects(fabric, livy, livy_control):
    livy_control.inject(service="fabric", status=429, retry_after=7, count=1)
    throttled = fabric("GET", "/sessions")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "7"
    assert throttled.json()["errorCode"] == "RequestBlocked"
    livy_control.inject(service="livy", status=503, count=1)
    unavailable = livy("GET", "/sessions")
    assert unavailable.status_code == 503 and "msg" in unavailable.json()


def test_sparkmagic_sql_output_is_json_lines_in_a_standalone_emulator(tmp_path):
    """What `make demo` runs (no pytest catching warnings): sparkmagic's %%sql statement answers pure JSON lines
    on its first run, so a notebook's first %%sql cell works."""
    import json
    import subprocess
    import sys

    endpoints_file = tmp_path / "endpoints.json"
    with open(tmp_path / "emulator.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aml_jupyterhub.emulator", "--data-dir", str(tmp_path / "state"), "--endpoints-file", str(endpoints_file)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        written = lambda: endpoints_file.exists() and endpoints_file.read_text().endswith("\n")  # noqa: E731
        endpoints = wait_for(lambda: written() and json.loads(endpoints_file.read_text())["emulator"], 60, 0.1, "the emulator")
        http = requests.Session()
        http.trust_env = False
        livy = endpoints["livy"]
        session = http.post(f"{livy}/sessions", json={"kind": "pyspark"}, verify=endpoints["ca_bundle"], timeout=30).json()
        state = lambda: http.get(f"{livy}/sessions/{session['id']}", verify=endpoints["ca_bundle"], timeout=30).json()["state"]  # noqa: E731
        wait_for(lambda: state() == "idle", 180, 0.2, "the Livy session")
        code = 'import sys\nfor row in spark.sql(u"""SELECT 6 * 7 AS answer """).toJSON(use_unicode=(sys.version_info.major > 2)).take(2500): print(row)'
        statement = http.post(f"{livy}/sessions/{session['id']}/statements", json={"code": code}, verify=endpoints["ca_bundle"], timeout=30).json()
        url = f"{livy}/sessions/{session['id']}/statements/{statement['id']}"
        done = wait_for(lambda: (b := http.get(url, verify=endpoints["ca_bundle"], timeout=30).json())["state"] == "available" and b, 120, 0.2, "the statement")
        output = done["output"]
        assert output["status"] == "ok", output
        lines = output["data"]["text/plain"].splitlines()
        assert [json.loads(line) for line in lines] == [{"answer": 42}], lines
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
