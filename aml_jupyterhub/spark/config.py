"""sparkmagic's ``config.json`` from :class:`SparkSettings` (pure), and writing it atomically.

sparkmagic replaces its defaults key by key, so every map we set (``authenticators``,
``http_session_config``) is complete. Our own plug-in reads the ``aml_jupyterhub``
section, which sparkmagic ignores.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .settings import SparkSettings

SECTION = "aml_jupyterhub"
AUTH_ENTRA = "AmlEntraBearer"
AUTH_BASIC_ENV = "AmlBasicEnv"
AUTHENTICATORS = {
    "None": "sparkmagic.auth.customauth.Authenticator",
    "Kerberos": "sparkmagic.auth.kerberos.Kerberos",
    "Basic_Access": "sparkmagic.auth.basic.Basic",
    AUTH_ENTRA: "aml_jupyterhub.spark.fabric_auth.EntraBearerAuth",
    AUTH_BASIC_ENV: "aml_jupyterhub.spark.livy_auth.EnvBasicAuth",
}
ADAPTER = "aml_jupyterhub.spark.livy_http.LivyAdapter"
DEFAULT_LOG_DIR = "~/.sparkmagic"


def _auth_name(settings: SparkSettings) -> str:
    if settings.is_fabric:
        return AUTH_ENTRA
    return {"none": "None", "kerberos": "Kerberos", "basic": AUTH_BASIC_ENV}[settings.auth]


def _session_configs(settings: SparkSettings) -> dict[str, Any]:
    """What sparkmagic sends in ``POST /sessions`` (the plug-in adds the unique name per session)."""
    configs: dict[str, Any] = {"name": settings.session_name_prefix}
    if settings.spark_conf:
        configs["conf"] = dict(settings.spark_conf)
    if settings.py_files:
        configs["pyFiles"] = list(settings.py_files)
    if settings.ttl:
        configs["ttl"] = settings.ttl
    if settings.idle_timeout:
        configs["idleTimeout"] = settings.idle_timeout
    return configs


def sparkmagic_config(settings: SparkSettings, *, ca_bundle: str | None = None, log_dir: str = DEFAULT_LOG_DIR) -> dict:
    """The whole sparkmagic ``config.json`` content for ``settings``."""
    credentials = {
        "username": settings.username or "",
        "base64_password": "",  # never a password here: AmlBasicEnv reads it from the environment
        "url": settings.endpoint,
        "auth": _auth_name(settings),
    }
    return {
        "kernel_python_credentials": dict(credentials),
        "kernel_scala_credentials": dict(credentials),
        "kernel_r_credentials": dict(credentials),
        "authenticators": dict(AUTHENTICATORS),
        "http_session_config": {
            "adapters": [{"prefix": "https://", "adapter": ADAPTER}, {"prefix": "http://", "adapter": ADAPTER}]
        },
        "session_configs": _session_configs(settings),
        "livy_session_startup_timeout_seconds": settings.startup_timeout_seconds,
        # Fabric has no heartbeat parameter; Apache Livy ends a session whose kernel stopped beating.
        "livy_server_heartbeat_timeout_seconds": 0 if settings.is_fabric else settings.heartbeat_timeout_seconds,
        # The plug-in retries (429/5xx, Retry-After); sparkmagic's own retries would multiply the wait.
        # sparkmagic retries while ``retry_count <= max_retries``, so -1 (not 0) turns its retries off.
        "retry_policy": "configurable",
        "retry_seconds_to_sleep_list": [0.5],
        "configurable_retry_policy_max_retries": -1,
        "ignore_ssl_errors": False,
        "cleanup_all_sessions_on_exit": True,
        "logging_config": {
            "version": 1,
            "formatters": {"magicsFormatter": {"format": "%(asctime)s\t%(levelname)s\t%(message)s", "datefmt": ""}},
            "handlers": {
                "magicsHandler": {
                    "class": "hdijupyterutils.filehandler.MagicsFileHandler",
                    "formatter": "magicsFormatter",
                    "home_path": log_dir,
                }
            },
            "loggers": {"magicsLogger": {"handlers": ["magicsHandler"], "level": "INFO", "propagate": 0}},
        },
        SECTION: {
            "backend": settings.backend,
            "timeout_seconds": settings.timeout_seconds,
            "max_retries": settings.max_retries,
            "session_name_prefix": settings.session_name_prefix,
            "token_source": settings.token_source,
            "token_resource": settings.token_resource,
            "ca_bundle": ca_bundle,
            "username": settings.username,
            "password_env": settings.password_env,
        },
    }


def write_sparkmagic_config(config: dict, conf_dir: Path) -> Path:
    """Write ``conf_dir/config.json`` atomically (mode 0644) and create ``conf_dir/logs``.

    A default ``~/.sparkmagic`` log location is pointed at ``conf_dir``.
    """
    conf_dir = Path(conf_dir).expanduser()
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "logs").mkdir(exist_ok=True)
    config = json.loads(json.dumps(config))
    handler = config.get("logging_config", {}).get("handlers", {}).get("magicsHandler", {})
    if handler.get("home_path") == DEFAULT_LOG_DIR:
        handler["home_path"] = str(conf_dir)
    target = conf_dir / "config.json"
    fd, tmp = tempfile.mkstemp(dir=conf_dir, prefix=".config-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
