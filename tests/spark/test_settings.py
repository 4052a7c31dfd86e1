"""Pure unit tests: admin settings validation, sparkmagic config building and writing, the plug-in's helpers."""

from __future__ import annotations

import email.utils
import json
import stat
import time

import pytest
import requests
from azure.core.credentials import AccessToken

from aml_jupyterhub.spark import SparkConfigError, parse_spark_settings, sparkmagic_config, write_sparkmagic_config
from aml_jupyterhub.spark import fabric_compat
from aml_jupyterhub.spark.livy_http import retry_delay, unique_session_name
from aml_jupyterhub.spark.token_source import BearerTokenProvider, TokenSourceError

FABRIC = "https://api.fabric.microsoft.com/v1/workspaces/ws-1/lakehouses/lh-1/livyapi/versions/2023-12-01"
LIVY = "https://livy.example.com:8998"


def test_fabric_settings_and_config():
    settings = parse_spark_settings({
        "backend": "fabric", "endpoint": FABRIC + "/", "timeout_seconds": 30, "session_name_prefix": "alice",
        "spark_conf": '{"spark.fabric.environmentDetails": "{\\"id\\": \\"env-1\\"}"}',
    })
    assert settings.endpoint == FABRIC and settings.timeout_seconds == 30.0
    assert settings.spark_conf == {"spark.fabric.environmentDetails": '{"id": "env-1"}'}
    config = sparkmagic_config(settings, ca_bundle="/etc/ca.pem")
    assert config["kernel_python_credentials"] == {"username": "", "base64_password": "", "url": FABRIC,
                                                   "auth": "AmlEntraBearer"}
    assert config["authenticators"]["AmlEntraBearer"] == "aml_jupyterhub.spark.fabric_auth.EntraBearerAuth"
    assert config["authenticators"]["None"] == "sparkmagic.auth.customauth.Authenticator"  # defaults kept
    assert {a["prefix"] for a in config["http_session_config"]["adapters"]} == {"https://", "http://"}
    assert config["session_configs"] == {"name": "alice", "conf": settings.spark_conf}
    assert config["livy_server_heartbeat_timeout_seconds"] == 0  # Fabric takes no heartbeat parameter
    assert config["configurable_retry_policy_max_retries"] == -1
    assert config["aml_jupyterhub"]["ca_bundle"] == "/etc/ca.pem"
    assert config["aml_jupyterhub"]["token_source"] == "aml_jupyterhub.tokens:get_token"
    json.dumps(config)  # JSON-able


def test_apache_settings_and_config():
    settings = parse_spark_settings({
        "backend": "apache", "endpoint": LIVY, "py_files": " /opt/a.whl, hdfs:///libs/b.whl ", "ttl": "30m",
        "idle_timeout": 600, "auth": "basic", "username": "svc", "password_env": "LIVY_PASSWORD",
        "spark_conf": {"spark.executor.memory": "4g", "spark.dynamicAllocation.enabled": True, "spark.cores": 2},
    })
    assert settings.py_files == ("/opt/a.whl", "hdfs:///libs/b.whl")
    assert settings.idle_timeout == "600s"
    config = sparkmagic_config(settings)
    assert config["session_configs"] == {
        "name": "jupyter", "pyFiles": ["/opt/a.whl", "hdfs:///libs/b.whl"], "ttl": "30m", "idleTimeout": "600s",
        "conf": {"spark.executor.memory": "4g", "spark.dynamicAllocation.enabled": "true", "spark.cores": "2"},
    }
    assert config["kernel_python_credentials"]["auth"] == "AmlBasicEnv"
    assert config["kernel_python_credentials"]["username"] == "svc"
    assert config["aml_jupyterhub"]["password_env"] == "LIVY_PASSWORD"
    assert config["livy_server_heartbeat_timeout_seconds"] == 60
    kerberos = sparkmagic_config(parse_spark_settings({"backend": "apache", "endpoint": LIVY, "auth": "kerberos"}))
    assert kerberos["kernel_python_credentials"]["auth"] == "Kerberos"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"endpoint": LIVY}, "spark.backend"),
        ({"backend": "databricks", "endpoint": LIVY}, "spark.backend"),
        ({"backend": "apache"}, "spark.endpoint"),
        ({"backend": "apache", "endpoint": "livy:8998"}, "spark.endpoint"),
        ({"backend": "fabric", "endpoint": "http://api.fabric.microsoft.com/v1/workspaces/a/lakehouses/b/livyapi/versions/1"},
         "spark.endpoint"),
        ({"backend": "fabric", "endpoint": "https://api.fabric.microsoft.com/v1/workspaces/a"}, "spark.endpoint"),
        ({"backend": "apache", "endpoint": LIVY, "timeout_seconds": 0}, "spark.timeout_seconds"),
        ({"backend": "apache", "endpoint": LIVY, "timeout_seconds": "60"}, "spark.timeout_seconds"),
        ({"backend": "apache", "endpoint": LIVY, "session_name_prefix": "a b"}, "spark.session_name_prefix"),
        ({"backend": "apache", "endpoint": LIVY, "spark_conf": "{not json"}, "spark.spark_conf"),
        ({"backend": "apache", "endpoint": LIVY, "spark_conf": ["a"]}, "spark.spark_conf"),
        ({"backend": "apache", "endpoint": LIVY, "py_files": "libs/a.whl"}, "spark.py_files"),
        ({"backend": "apache", "endpoint": LIVY, "ttl": "ten minutes"}, "spark.ttl"),
        ({"backend": "apache", "endpoint": LIVY, "auth": "oauth"}, "spark.auth"),
        ({"backend": "apache", "endpoint": LIVY, "auth": "basic", "password_env": "P"}, "spark.username"),
        ({"backend": "apache", "endpoint": LIVY, "auth": "basic", "username": "u"}, "spark.password_env"),
        ({"backend": "apache", "endpoint": LIVY, "auth": "basic", "username": "u", "password_env": "$P"}, "spark.password_env"),
        ({"backend": "apache", "endpoint": LIVY, "password": "hunter2"}, "spark.password"),
        ({"backend": "apache", "endpoint": LIVY, "max_retry": 3}, "max_retry"),
        ({"backend": "fabric", "endpoint": FABRIC, "py_files": "/opt/a.whl"}, "Environment"),
        ({"backend": "fabric", "endpoint": FABRIC, "ttl": "10m"}, "spark.ttl"),
        ({"backend": "fabric", "endpoint": FABRIC, "auth": "basic"}, "spark.auth"),
        ({"backend": "fabric", "endpoint": FABRIC, "token_source": "not a path"}, "spark.token_source"),
    ],
)
def test_bad_settings_name_the_key(raw, key):
    with pytest.raises(SparkConfigError, match=key.replace(".", r"\.")):
        parse_spark_settings(raw)


def test_settings_are_frozen():
    settings = parse_spark_settings({"backend": "apache", "endpoint": LIVY})
    with pytest.raises(AttributeError):
        settings.endpoint = "https://elsewhere"  # type: ignore[misc]
    assert hash(settings) == hash(parse_spark_settings({"backend": "apache", "endpoint": LIVY + "/"}))


def test_write_config_is_atomic_and_logs_go_to_the_conf_dir(tmp_path):
    config = sparkmagic_config(parse_spark_settings({"backend": "apache", "endpoint": LIVY}))
    target = write_sparkmagic_config(config, tmp_path / "conf")
    assert target == tmp_path / "conf" / "config.json"
    written = json.loads(target.read_text())
    assert written["logging_config"]["handlers"]["magicsHandler"]["home_path"] == str(tmp_path / "conf")
    assert (tmp_path / "conf" / "logs").is_dir()
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert config["logging_config"]["handlers"]["magicsHandler"]["home_path"] == "~/.sparkmagic"  # input untouched
    write_sparkmagic_config({**config, "session_configs": {"name": "x"}}, tmp_path / "conf")  # rewritten each start
    assert json.loads(target.read_text())["session_configs"] == {"name": "x"}
    assert [p.name for p in (tmp_path / "conf").iterdir() if p.name.startswith(".")] == []


def test_fabric_answers_translate_to_livy_shapes():
    created = {"id": "5d1c...", "name": "n", "fabricSessionStateInfo": {"state": "queued"}}
    assert fabric_compat.translate("POST", "/x/sessions", 202, created)[0] == 201
    assert fabric_compat.translate("POST", "/x/sessions", 202, created)[1]["state"] == "starting"
    for current, expected in ((None, "starting"), ("submitting", "starting"), ("not_submitted", "starting"),
                              ("idle", "idle"), ("dead", "dead")):
        body = {"id": "g", "livyInfo": {"currentState": current}}
        status, out = fabric_compat.translate("GET", "/x/sessions/g", 200, body)
        assert (status, out["state"], out["log"]) == (200, expected, [])
    status, out = fabric_compat.translate("POST", "/x/sessions/g/statements", 200, {"id": 0, "state": "Waiting"})
    assert (status, out["state"]) == (201, "waiting")
    _, out = fabric_compat.translate("GET", "/x/sessions/g/statements/0", 200,
                                     {"id": 0, "state": "Error", "output": {"status": "error", "traceback": "tb"}})
    assert out["state"] == "error" and out["output"]["traceback"] == ["tb"]
    _, listed = fabric_compat.translate("GET", "/x/sessions", 200, {"items": [{"id": "g"}], "totalCountOfMatchedItems": 1})
    assert listed["total"] == 1 and listed["sessions"][0]["state"] == "starting"
    assert fabric_compat.fabric_session_payload({"kind": "pyspark", "name": "n", "heartbeatTimeoutInSecond": 60,
                                                 "conf": {}}) == {"name": "n", "conf": {}}


def test_retry_delay_honours_retry_after():
    response = requests.Response()
    response.headers["Retry-After"] = "3"
    assert retry_delay(response, 0) == 3.0
    response.headers["Retry-After"] = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_delay(response, 0) <= 10
    response.headers["Retry-After"] = "100000"
    assert retry_delay(response, 0) == 60.0  # capped
    del response.headers["Retry-After"]
    assert [retry_delay(response, n) for n in range(3)] == [0.5, 1.0, 2.0]


def test_session_names_are_unique_per_session():
    names = {unique_session_name("alice") for _ in range(50)}
    assert len(names) == 50 and all(n.startswith("alice-") for n in names)


def test_token_provider_caches_refreshes_and_explains():
    calls: list[bool] = []

    def source(resource: str, force_refresh: bool = False) -> AccessToken:
        calls.append(force_refresh)
        return AccessToken(f"token-{len(calls)}", int(time.time()) + 3600)

    provider = BearerTokenProvider(source, "fabric")
    assert provider.token() == "token-1" and provider.token() == "token-1"
    assert provider.refresh("token-1") == "token-2" and calls == [False, True]
    assert provider.refresh("token-1") == "token-2" and len(calls) == 2  # already replaced: no second fetch

    def failing(resource: str) -> AccessToken:
        raise RuntimeError("Token broker answered 401: log in to the hub again")

    with pytest.raises(TokenSourceError, match="log in to the hub again"):
        BearerTokenProvider(failing, "fabric").token()
    with pytest.raises(TokenSourceError, match="cannot load"):
        BearerTokenProvider("no_such_module:get", "fabric").token()
