"""A real sparkmagic PySpark kernel against the emulated Microsoft Fabric Livy API, through the plug-in.

Tokens come from :mod:`support.spark_tokens` (real tokens minted by the
emulator for alice); the hub's broker is exercised in ``test_hub_broker.py``.
"""

from __future__ import annotations

import re
import time

from aml_jupyterhub.emulator.core.config import default_config
from support.spark_fixtures import token_fetches

ALICE = default_config().user("alice@contoso.example")
ENV_ID = "6f1c1b0e-7d2a-4d7e-9d55-0a0b0c0d0e0f"


def fabric(endpoint: str, **extra):
    return {"backend": "fabric", "endpoint": endpoint, "timeout_seconds": 20, **extra}


def fabric_requests(control, since: float) -> list[tuple[str, str, int]]:
    return [(r["method"], r["route"], r["status"]) for r in control.requests(since=since, service="fabric")]


def test_fabric_kernel_runs_cells_with_the_users_token(fabric_endpoint, spark_kernel, livy_control):
    settings = fabric(fabric_endpoint, session_name_prefix="alice",
                      spark_conf={"spark.fabric.environmentDetails": {"id": ENV_ID}})
    kernel = spark_kernel(settings)
    since = livy_control.mark()

    first = kernel.run("rows = spark.createDataFrame([(1, 'a'), (2, 'b')], 'n INT, s STRING')\nrows.count() * 21")
    assert first.status == "ok", first.text
    assert "42" in first.stdout and "SparkSession available as 'spark'" in first.stdout

    [session] = livy_control.livy_sessions("fabric")[-1:]
    assert re.fullmatch(r"[0-9a-f-]{36}", session["id"])
    assert session["owner"] == ALICE.oid
    assert re.fullmatch(r"alice-\d{8}T\d{6}Z-[0-9a-f]{6}", session["name"])
    assert session["request"]["conf"] == {"spark.fabric.environmentDetails": f'{{"id": "{ENV_ID}"}}'}
    assert not {"kind", "heartbeatTimeoutInSecond", "pyFiles"} & set(session["request"])

    calls = fabric_requests(livy_control, since)
    assert calls[0] == ("POST", "Sessions", 202)  # stock sparkmagic would stop here: it accepts only 201
    assert ("POST", "Statements", 200) in calls
    assert all(status in (200, 202) for _, _, status in calls)

    error = kernel.run("spark.sql('SELECT * FROM no_such_table')")
    assert "TABLE_OR_VIEW_NOT_FOUND" in error.stderr or "no_such_table" in error.stderr, error.text

    assert kernel.run("rows.filter('n > 1').first().s").stdout.strip().endswith("'b'")
    assert len(token_fetches(kernel)) == 1  # one token, reused until it nears expiry

    kernel.shutdown()
    assert ("DELETE", "Session", 200) in fabric_requests(livy_control, since)
    assert all(s["id"] != session["id"] for s in livy_control.livy_sessions("fabric"))
    logs = "".join(p.read_text() for p in (kernel.conf_dir / "logs").iterdir())
    assert "SessionGuid" in logs and "eyJ" not in logs and "Bearer" not in logs  # sparkmagic's log: no token


def test_session_ended_by_fabric_idle_expiry_is_explained(fabric_endpoint, spark_kernel, livy_control):
    kernel = spark_kernel(fabric(fabric_endpoint))
    assert kernel.run("1").status == "ok"
    livy_control.advance_clock(1300)  # Fabric ends sessions after 20 minutes idle
    result = kernel.run("2")
    assert "unexpectedly reached final status 'dead'" in result.stderr, result.text
    assert "about 20 minutes idle: restart the kernel" in result.stderr


def test_expired_token_is_replaced_between_cells(fabric_endpoint, spark_kernel, livy_control):
    kernel = spark_kernel(fabric(fabric_endpoint), token_lifetime=600)
    assert kernel.run("counter = spark.range(10).count()\ncounter").status == "ok"
    [first] = token_fetches(kernel)

    livy_control.advance_clock(900)  # past the token's lifetime, not past Fabric's 20-minute idle expiry
    since = livy_control.mark()
    result = kernel.run("counter + 1")
    assert result.status == "ok" and "11" in result.stdout, result.text

    fetches = token_fetches(kernel)
    assert len(fetches) == 2 and fetches[0] == first and fetches[1].endswith("force=True")
    assert fetches[1].split()[1] != first.split()[1]  # a different token
    calls = fabric_requests(livy_control, since)
    assert calls[0][2] == 401  # the old token was refused once...
    assert all(status == 200 for _, _, status in calls[1:])  # ...and never again


def test_missing_fabric_permission_is_explained(fabric_endpoint, spark_kernel):
    kernel = spark_kernel(fabric(fabric_endpoint), token_scope="https://api.fabric.microsoft.com/Lakehouse.Read.All")
    result = kernel.run("1 + 1")
    assert "Microsoft Fabric refused access (InsufficientScopes" in result.stderr, result.text
    assert "Contributor" in result.stderr and "Code.AccessFabric.All" in result.stderr


def test_token_fabric_does_not_accept_is_explained(fabric_endpoint, spark_kernel, livy_control):
    # a token for another resource (Storage): Fabric answers 401 however often it is replaced
    kernel = spark_kernel(fabric(fabric_endpoint), token_scope="https://storage.azure.com/user_impersonation")
    since = livy_control.mark()
    result = kernel.run("1 + 1")
    assert "Microsoft Fabric did not accept your sign-in (InvalidToken" in result.stderr, result.text
    assert "Sign in to JupyterHub again" in result.stderr
    assert [c[2] for c in fabric_requests(livy_control, since)] == [401, 401]  # one retry with a fresh token
    assert len(token_fetches(kernel)) == 2
    for line in token_fetches(kernel):
        assert "eyJ" not in line  # digests only, never a token


def test_throttling_and_server_errors_are_retried(fabric_endpoint, spark_kernel, livy_control):
    kernel = spark_kernel(fabric(fabric_endpoint))
    assert kernel.run("v = 7").status == "ok"
    livy_control.inject(service="fabric", method="POST", path="/statements$", status=429, retry_after=1, count=2)
    livy_control.inject(service="fabric", method="GET", path=r"/statements/\d+$", status=503, count=1)
    since, started = livy_control.mark(), time.monotonic()
    result = kernel.run("v * 6")
    assert result.status == "ok" and "42" in result.stdout, result.text
    assert time.monotonic() - started >= 2  # Retry-After: 1, twice
    calls = fabric_requests(livy_control, since)
    assert [status for method, route, status in calls if (method, route) == ("POST", "Statements")] == [429, 429, 200]
    polls = [status for method, route, status in calls if route == "StatementItem"]
    assert polls[0] == 503 and polls[-1] == 200


def test_dead_fabric_endpoint_fails_within_the_timeout(fabric_endpoint, spark_kernel, livy_control):
    kernel = spark_kernel(fabric(fabric_endpoint, timeout_seconds=2))
    livy_control.inject(service="fabric", path="/sessions$", method="POST", latency=30, count=1)
    started = time.monotonic()
    result = kernel.run("1 + 1", timeout=60)
    assert time.monotonic() - started < 15
    assert "within 2 s" in result.stderr, result.text


def test_token_source_failure_is_explained_and_nothing_is_sent(fabric_endpoint, spark_kernel, livy_control):
    # the default source (the hub's broker) with a hub that does not answer
    settings = fabric(fabric_endpoint, token_source="aml_jupyterhub.tokens:get_token")
    kernel = spark_kernel(settings, env={"JUPYTERHUB_API_URL": "http://127.0.0.1:9/hub/api", "JUPYTERHUB_API_TOKEN": "t"})
    since = livy_control.mark()
    result = kernel.run("1 + 1")
    assert "No request was sent: could not get a fabric token" in result.stderr, result.text
    assert livy_control.requests(since=since, service="fabric") == []
