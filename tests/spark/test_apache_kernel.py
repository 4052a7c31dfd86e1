"""A real sparkmagic PySpark kernel against the emulated Apache Livy: sessions, real Spark, errors, shutdown."""

from __future__ import annotations

import re
import time

import pytest

from support.spark_fixtures import CellResult

# sparkmagic's %%sql code calls DataFrame.toJSON, which pyspark 4 (in the emulator) warns about.
pytestmark = pytest.mark.filterwarnings("ignore:The return type of DataFrame.toJSON:UserWarning")


def apache(emulator, **extra):
    return {"backend": "apache", "endpoint": emulator.endpoints["livy"], "timeout_seconds": 20, **extra}


def sessions_named(control, prefix: str) -> list[dict]:
    return [s for s in control.livy_sessions("apache") if (s["name"] or "").startswith(prefix + "-")]


def test_pyspark_kernel_runs_cells_on_livy_and_deletes_its_session(emulator, spark_kernel, livy_control):
    kernel = spark_kernel(apache(emulator, session_name_prefix="alice", spark_conf={"spark.sql.shuffle.partitions": 3}))

    first = kernel.run("total = spark.range(1, 101).selectExpr('sum(id) AS s').first().s\nprint('total', total)")
    assert first.status == "ok", first.text
    assert "total 5050" in first.stdout
    assert "SparkSession available as 'spark'" in first.stdout

    [session] = sessions_named(livy_control, "alice")
    assert re.fullmatch(r"alice-\d{8}T\d{6}Z-[0-9a-f]{6}", session["name"])
    assert session["request"]["kind"] == "pyspark"
    assert session["request"]["conf"] == {"spark.sql.shuffle.partitions": "3"}

    # state carries over between cells, as in a REPL
    second = kernel.run("total * 2")
    assert second.status == "ok" and "10100" in second.stdout, second.text

    error = kernel.run("1 / 0")
    assert "ZeroDivisionError" in error.stderr and "division by zero" in error.stderr, error.text

    sql = kernel.run("%%sql -o top\nSELECT id, id * id AS square FROM range(5) ORDER BY id DESC LIMIT 2")
    assert sql.status == "ok", sql.text
    local = kernel.run("%%local\nprint(top.to_dict('list'))")
    assert "{'id': [4, 3], 'square': [16, 9]}" in local.stdout, local.text

    since = livy_control.mark()
    kernel.shutdown()
    deletes = [r for r in livy_control.requests(since=since, service="livy") if r["method"] == "DELETE"]
    assert [(r["path"], r["status"]) for r in deletes] == [(f"/sessions/{session['id']}", 200)]
    assert sessions_named(livy_control, "alice") == []


def test_two_kernels_of_one_user_get_distinct_sessions(emulator, spark_kernel, livy_control):
    settings = apache(emulator, session_name_prefix="bob", ttl="30m", py_files="/opt/libs/a.whl,/opt/libs/b.whl")
    one, two = spark_kernel(settings), spark_kernel(settings)
    assert one.run("x = 1\nx").status == "ok"
    assert two.run("x = 2\nx").status == "ok"
    sessions = sessions_named(livy_control, "bob")
    assert len(sessions) == 2 and sessions[0]["name"] != sessions[1]["name"]
    for s in sessions:
        assert s["request"]["pyFiles"] == ["/opt/libs/a.whl", "/opt/libs/b.whl"]
        assert s["request"]["ttl"] == "30m"
        assert s["request"]["heartbeatTimeoutInSecond"] == 60
    # each kernel has its own namespace on the server
    assert "1" in one.run("x").stdout and "2" in two.run("x").stdout


def test_dead_livy_endpoint_fails_within_the_timeout(emulator, spark_kernel, livy_control):
    kernel = spark_kernel(apache(emulator, timeout_seconds=2))
    livy_control.inject(service="livy", method="POST", path="^/sessions$", latency=30, count=1)
    started = time.monotonic()
    result: CellResult = kernel.run("1 + 1", timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed < 15, elapsed
    assert "within 2 s" in result.stderr and "request timeout" in result.stderr, result.text


def test_basic_auth_password_comes_from_the_environment(emulator, spark_kernel, livy_control):
    livy_control.livy_settings(basic_username="svc-livy", basic_password="s3cret-pw")
    settings = apache(emulator, auth="basic", username="svc-livy", password_env="LIVY_PASSWORD")
    kernel = spark_kernel(settings, env={"LIVY_PASSWORD": "s3cret-pw"})
    assert "s3cret-pw" not in (kernel.conf_dir / "config.json").read_text()
    result = kernel.run("spark.range(3).count()")
    assert result.status == "ok" and "3" in result.stdout, result.text
    wrong = spark_kernel(settings, env={"LIVY_PASSWORD": "wrong"}).run("1")
    assert "refused the credentials (401" in wrong.stderr, wrong.text
