"""The admin's Spark settings (per profile or global), validated into a frozen :class:`SparkSettings`.

Pure: no sparkmagic import, so the hub can validate a profile before spawning.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

BACKENDS = ("apache", "fabric")
AUTH_MODES = ("none", "basic", "kerberos")
DEFAULT_TOKEN_SOURCE = "aml_jupyterhub.tokens:get_token"
FABRIC_PATH = re.compile(
    r"^/v1/workspaces/[^/]+/lakehouses/[^/]+/livyapi/versions/[^/]+$", re.IGNORECASE
)
DURATION = re.compile(r"^\d+(ms|s|m|min|h|d)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$")
SOURCE_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
KNOWN_KEYS = frozenset(
    {
        "backend", "endpoint", "timeout_seconds", "session_name_prefix", "spark_conf", "py_files", "ttl",
        "idle_timeout", "auth", "username", "password_env", "token_resource", "token_source",
        "startup_timeout_seconds", "max_retries", "heartbeat_timeout_seconds",
    }
)


class SparkConfigError(ValueError):
    """A bad admin setting; the message names the key."""


@dataclass(frozen=True)
class SparkSettings:
    """One validated Spark configuration (see docs/spark.md for every key)."""

    backend: str
    endpoint: str
    timeout_seconds: float = 60.0
    session_name_prefix: str = "jupyter"
    spark_conf: dict[str, str] = field(default_factory=dict, hash=False)  # keeps settings hashable
    py_files: tuple[str, ...] = ()
    ttl: str | None = None
    idle_timeout: str | None = None
    auth: str = "none"
    username: str | None = None
    password_env: str | None = None
    token_resource: str = "fabric"
    token_source: str = DEFAULT_TOKEN_SOURCE
    startup_timeout_seconds: int = 600
    max_retries: int = 5
    heartbeat_timeout_seconds: int = 60

    @property
    def is_fabric(self) -> bool:
        return self.backend == "fabric"


def _number(raw: dict[str, Any], key: str, default: float, *, integer: bool = False, minimum: float = 0) -> Any:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise SparkConfigError(f"spark.{key} must be {kind} >= {minimum}, not {value!r}")
    if integer and int(value) != value:
        raise SparkConfigError(f"spark.{key} must be an integer, not {value!r}")
    return int(value) if integer else float(value)


def _endpoint(backend: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SparkConfigError("spark.endpoint is required (the Livy base URL)")
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SparkConfigError(f"spark.endpoint must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise SparkConfigError("spark.endpoint must not have a query string or fragment")
    if backend == "fabric":
        if parts.scheme != "https":
            raise SparkConfigError("spark.endpoint must be https for the fabric backend")
        if not FABRIC_PATH.match(parts.path):
            raise SparkConfigError(
                "spark.endpoint for fabric must look like https://api.fabric.microsoft.com/v1/workspaces/<ws>"
                "/lakehouses/<lakehouse>/livyapi/versions/2023-12-01"
            )
    return url


def _spark_conf(value: Any) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise SparkConfigError(f"spark.spark_conf is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise SparkConfigError("spark.spark_conf must be a JSON object of Spark properties")
    conf: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise SparkConfigError(f"spark.spark_conf has an invalid property name {k!r}")
        if isinstance(v, (dict, list)):
            conf[k] = json.dumps(v)  # e.g. spark.fabric.environmentDetails = {"id": "..."}
        elif isinstance(v, bool):
            conf[k] = "true" if v else "false"
        elif isinstance(v, (str, int, float)):
            conf[k] = str(v)
        else:
            raise SparkConfigError(f"spark.spark_conf[{k!r}] must be a string, number or boolean")
    return conf


def _py_files(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise SparkConfigError("spark.py_files must be a comma-separated string or a list of paths")
    paths = tuple(str(p).strip() for p in items if str(p).strip())
    for p in paths:
        if not (p.startswith("/") or re.match(r"^[a-z][a-z0-9+.-]*://", p)):
            raise SparkConfigError(f"spark.py_files entries must be absolute paths or URLs on the cluster, not {p!r}")
    return paths


def _duration(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value}s"
    if not isinstance(value, str) or not DURATION.match(value):
        raise SparkConfigError(f"spark.{key} must be a Livy duration like '30m', '2h' or '600s', not {value!r}")
    return value


def parse_spark_settings(raw: dict[str, Any]) -> SparkSettings:
    """Validate the admin's dict; raises :class:`SparkConfigError` naming the bad key."""
    if not isinstance(raw, dict):
        raise SparkConfigError("spark settings must be a dict")
    if "password" in raw:
        raise SparkConfigError("spark.password is not allowed: name an environment variable with spark.password_env")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise SparkConfigError(f"unknown spark setting(s): {', '.join(unknown)}")
    backend = raw.get("backend")
    if backend not in BACKENDS:
        raise SparkConfigError(f"spark.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    prefix = raw.get("session_name_prefix") or "jupyter"
    if not isinstance(prefix, str) or not PREFIX.match(prefix):
        raise SparkConfigError(
            "spark.session_name_prefix must be 1-40 letters, digits, '.', '_' or '-' (starting with a letter or digit)"
        )
    auth = raw.get("auth") or "none"
    if auth not in AUTH_MODES:
        raise SparkConfigError(f"spark.auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    if backend == "fabric" and auth != "none":
        raise SparkConfigError("spark.auth must be 'none' for fabric (it always uses the user's Entra token)")
    username, password_env = raw.get("username"), raw.get("password_env")
    if auth == "basic":
        if not isinstance(username, str) or not username:
            raise SparkConfigError("spark.username is required with auth 'basic'")
        if not isinstance(password_env, str) or not ENV_NAME.match(password_env):
            raise SparkConfigError("spark.password_env must name an environment variable holding the password")
    elif password_env is not None:
        raise SparkConfigError("spark.password_env is only used with auth 'basic'")
    token_source = raw.get("token_source") or DEFAULT_TOKEN_SOURCE
    if not isinstance(token_source, str) or not SOURCE_PATH.match(token_source):
        raise SparkConfigError("spark.token_source must be 'package.module:function'")
    token_resource = raw.get("token_resource") or "fabric"
    if not isinstance(token_resource, str):
        raise SparkConfigError("spark.token_resource must be a resource name such as 'fabric'")
    py_files, ttl, idle = _py_files(raw.get("py_files")), _duration(raw, "ttl"), _duration(raw, "idle_timeout")
    if backend == "fabric":
        if py_files:
            raise SparkConfigError(
                "spark.py_files is not supported by Fabric Livy sessions: publish the packages in a Fabric "
                "Environment and set spark_conf {\"spark.fabric.environmentDetails\": \"{\\\"id\\\": \\\"<envId>\\\"}\"}"
            )
        if ttl or idle:
            raise SparkConfigError("spark.ttl/idle_timeout are not supported by Fabric (sessions end after ~20 min idle)")
    return SparkSettings(
        backend=backend,
        endpoint=_endpoint(backend, raw.get("endpoint")),
        timeout_seconds=_number(raw, "timeout_seconds", 60.0, minimum=1),
        session_name_prefix=prefix,
        spark_conf=_spark_conf(raw.get("spark_conf")),
        py_files=py_files,
        ttl=ttl,
        idle_timeout=idle,
        auth=auth,
        username=username if auth == "basic" else None,
        password_env=password_env,
        token_resource=token_resource,
        token_source=token_source,
        startup_timeout_seconds=_number(raw, "startup_timeout_seconds", 600, integer=True, minimum=1),
        max_retries=_number(raw, "max_retries", 5, integer=True),
        heartbeat_timeout_seconds=_number(raw, "heartbeat_timeout_seconds", 60, integer=True),
    )
