"""The requests adapter sparkmagic mounts (``http_session_config.adapters``) for every Livy call.

For both backends it:

- applies the admin's request timeout (stock sparkmagic sets none, so a dead
  server hangs the kernel); a timeout or refused connection is answered with a
  504/503 whose text says what happened (sparkmagic shows only the payload);
- names each new session ``<prefix>-<UTC timestamp>-<random>`` so a user's second
  kernel does not collide (Apache Livy refuses a duplicate name with 400);
- retries 429 and 5xx with backoff, honouring ``Retry-After`` (a POST only on
  429/503, which mean "not processed"), up to ``max_retries`` times.

For Fabric it also drops the create fields Fabric does not take, answers
``/log`` locally, replaces a refused token once (401 -> fresh token -> resend),
translates answers to Apache Livy shapes (:mod:`.fabric_compat`), and turns a
final 401/403 into an explanation for the user.
"""

from __future__ import annotations

import email.utils
import json
import logging
import secrets
import time
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from . import fabric_compat
from .runtime import plugin_settings
from .token_source import TokenSourceError, shared_provider

log = logging.getLogger("aml_jupyterhub.spark")
MAX_DELAY = 60.0
RETRY_ANY = frozenset({"GET", "DELETE", "HEAD"})


def unique_session_name(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"


def make_response(request: requests.PreparedRequest, status: int, reason: str, text: str) -> requests.Response:
    """A response made here, not by the server (the text says so)."""
    r = requests.Response()
    r.status_code, r.reason, r.url, r.request = status, reason, request.url or "", request
    r._content = text.encode()
    r.encoding = "utf-8"
    r.headers = CaseInsensitiveDict({"Content-Type": "text/plain; charset=utf-8", "X-Aml-Synthesized": "1"})
    return r


def set_json(response: requests.Response, status: int, body: Any) -> requests.Response:
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.encoding = "utf-8"
    response.headers["Content-Type"] = "application/json; charset=utf-8"
    response.headers.pop("Content-Length", None)
    return response


def retry_delay(response: requests.Response, attempt: int) -> float:
    """``Retry-After`` (seconds or HTTP date) if given, else exponential backoff from 0.5 s."""
    value = response.headers.get("Retry-After")
    if value:
        try:
            return min(MAX_DELAY, max(0.0, float(value)))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            if when is not None:
                return min(MAX_DELAY, max(0.0, when.timestamp() - time.time()))
    return min(MAX_DELAY, 0.5 * 2**attempt)


def fabric_error(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:300]
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), dict) else body
        return str(error.get("errorCode") or error.get("code") or ""), str(error.get("message") or "")
    return "", str(body)[:300]


def explain_refusal(response: requests.Response, fabric: bool) -> str:
    code, message = fabric_error(response) if fabric else ("", response.text[:300])
    detail = f"{code}: {message}" if code else message
    if response.status_code == 401:
        if fabric:
            return (
                f"Microsoft Fabric did not accept your sign-in ({detail}). A fresh token was already tried. "
                "Sign in to JupyterHub again (File > Hub Control Panel > Log out, then log in) and restart the kernel."
            )
        return f"The Livy server refused the credentials (401: {detail}). Ask your administrator to check the Spark auth settings."
    if fabric:
        return (
            f"Microsoft Fabric refused access ({detail}). Check that you are a Contributor (or higher) in the "
            "Fabric workspace, that the Fabric tenant setting for the Livy API is on, and that the hub's app "
            "registration has the delegated Fabric permissions (Code.AccessFabric.All, Lakehouse.Execute.All)."
        )
    return f"The Livy server refused access (403: {detail})."


class LivyAdapter(HTTPAdapter):
    """Built by sparkmagic with no arguments; settings come from sparkmagic's config file."""

    def __init__(self, settings: dict[str, Any] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__()
        s = plugin_settings() if settings is None else settings
        self.fabric = s.get("backend") == "fabric"
        self.timeout = float(s.get("timeout_seconds") or 60)
        self.retries = int(s.get("max_retries", 5))
        self.prefix = s.get("session_name_prefix") or "jupyter"
        self.ca_bundle = s.get("ca_bundle")
        self.provider = (
            shared_provider(s.get("token_source") or "aml_jupyterhub.tokens:get_token", s.get("token_resource") or "fabric")
            if self.fabric
            else None
        )
        self._sleep = sleep

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: D102
        problem = getattr(request, "aml_token_error", None)
        if problem:
            return make_response(request, 401, "Unauthorized", f"No request was sent: {problem}.")
        if verify is not False and self.ca_bundle:
            verify = self.ca_bundle  # wins over REQUESTS_CA_BUNDLE, which requests merges in first
        method = (request.method or "GET").upper()
        session_id, rest = fabric_compat.route(requests.utils.urlparse(request.url).path)
        if method == "POST" and session_id is None and rest is None:
            self._rewrite_create(request)
        if self.fabric and method == "GET" and rest == "log":
            return set_json(make_response(request, 200, "OK", ""), 200, {"id": session_id, "from": 0, "total": 1,
                                                                          "log": [fabric_compat.NO_LOG]})
        kwargs = {"stream": stream, "timeout": self.timeout, "verify": verify, "cert": cert, "proxies": proxies}
        response = self._send_retrying(request, method, kwargs)
        if self.fabric and response.status_code == 401 and "X-Aml-Synthesized" not in response.headers:
            response = self._resend_with_new_token(request, method, kwargs, response)
        if response.status_code in (401, 403) and "X-Aml-Synthesized" not in response.headers:
            text = explain_refusal(response, self.fabric)
            response.close()
            return make_response(request, response.status_code, response.reason or "", text)
        if self.fabric and response.ok:
            try:
                body = response.json() if response.content else None
            except ValueError:
                return response
            status, body = fabric_compat.translate(method, requests.utils.urlparse(request.url).path,
                                                   response.status_code, body)
            if body is not None:
                set_json(response, status, body)
            else:
                response.status_code = status
        return response

    def _rewrite_create(self, request: requests.PreparedRequest) -> None:
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        payload["name"] = unique_session_name(self.prefix)
        if self.fabric:
            payload = fabric_compat.fabric_session_payload(payload)
        request.prepare_body(json.dumps(payload), None)

    def _send_retrying(self, request, method: str, kwargs: dict[str, Any]) -> requests.Response:
        attempt = 0
        while True:
            try:
                response = super().send(request, **kwargs)
            except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout):
                return make_response(
                    request, 504, "Gateway Timeout",
                    f"No answer from the Spark (Livy) endpoint within {self.timeout:g} s (the configured request "
                    "timeout); the request was abandoned. The service may be down or overloaded: try again later.",
                )
            except requests.exceptions.ConnectionError as e:
                if method in RETRY_ANY and attempt < self.retries:
                    self._sleep(min(MAX_DELAY, 0.5 * 2**attempt))
                    attempt += 1
                    continue
                return make_response(request, 503, "Service Unavailable",
                                     f"Could not connect to the Spark (Livy) endpoint: {type(e).__name__}.")
            status = response.status_code
            retryable = status == 429 or (status >= 500 and (method in RETRY_ANY or status == 503))
            if not retryable or attempt >= self.retries:
                return response
            delay = retry_delay(response, attempt)
            log.info("Livy answered %s to %s; retrying in %.1f s", status, method, delay)
            response.close()
            self._sleep(delay)
            attempt += 1

    def _resend_with_new_token(self, request, method, kwargs, refused: requests.Response) -> requests.Response:
        assert self.provider is not None
        rejected = (request.headers.get("Authorization") or "")[7:] or None
        try:
            token = self.provider.refresh(rejected)
        except TokenSourceError as e:
            refused.close()
            return make_response(request, 401, "Unauthorized", f"Microsoft Fabric refused the token and {e}.")
        if token == rejected:
            return refused
        refused.close()
        request.headers["Authorization"] = f"Bearer {token}"
        return self._send_retrying(request, method, kwargs)
