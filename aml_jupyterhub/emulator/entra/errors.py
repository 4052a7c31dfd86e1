"""Entra ID's error dialect: the AADSTS catalogue, the error body, and the handler base that answers with them."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ..core.handlers import EmulatorHandler, ServiceError
from ..core.tokens import EntraError


@dataclass(frozen=True)
class Aadsts:
    """One AADSTS error: calling it with the text's fields gives the :class:`EntraError` to raise."""

    code: int
    error: str
    text: str
    status: int = 400
    suberror: str | None = None

    def __call__(self, **fields: Any) -> EntraError:
        return EntraError(self.error, self.code, self.text.format(**fields), self.status, self.suberror)


TENANT_NOT_FOUND = Aadsts(
    90002,
    "invalid_request",
    "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
    "correct cloud. Check with your subscription administrator, this may happen if there are no active "
    "subscriptions for the tenant.",
)
MISSING_PARAMETER = Aadsts(
    900144, "invalid_request", "The request body must contain the following parameter: '{name}'."
)
APP_NOT_FOUND = Aadsts(
    700016,
    "unauthorized_client",
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the "
    "application has not been installed by the administrator of the tenant or consented to by any user in the "
    "tenant. You may have sent your authentication request to the wrong tenant.",
)
NOT_MULTI_TENANT = Aadsts(
    50194,
    "invalid_request",
    "Application '{client_id}'({name}) is not configured as a multi-tenant application. Usage of the /common "
    "endpoint is not supported for such applications created after '10/15/2018'. Use a tenant-specific endpoint "
    "or configure the application to be multi-tenant.",
)
REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_request",
    "The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for the "
    "application '{client_id}'. Make sure the redirect URI sent in the request matches one added to your "
    "application in the Azure portal. Navigate to https://aka.ms/redirectUriMismatchError to learn more about "
    "how to fix this.",
)
CODE_REDIRECT_MISMATCH = Aadsts(
    50011,
    "invalid_grant",
    "The reply address '{uri}' does not match the reply address '{expected}' provided when requesting "
    "Authorization code.",
)
UNSUPPORTED_RESPONSE_TYPE = Aadsts(
    700054, "unsupported_response_type", "response_type '{value}' is not enabled for the application."
)
INVALID_PROMPT = Aadsts(90023, "invalid_request", "Invalid value '{value}' for the 'prompt' parameter.")
LOGIN_REQUIRED = Aadsts(50058, "login_required", "A silent sign-in request was sent but no user is signed in.")
PKCE_METHOD = Aadsts(50149, "invalid_request", "Invalid Code_Challenge_method parameter.")
PKCE_SIZE = Aadsts(501491, "invalid_request", "Invalid size of Code_Challenge parameter.")
PKCE_MISSING = Aadsts(
    50148,
    "invalid_grant",
    "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
)
PKCE_MISMATCH = Aadsts(
    501481,
    "invalid_grant",
    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
)
UNKNOWN_USER = Aadsts(
    50034,
    "invalid_grant",
    "The user account {upn} does not exist in the {tenant} directory. To sign into this application, the account "
    "must be added to the directory.",
)
BAD_PASSWORD = Aadsts(50126, "invalid_grant", "Error validating credentials due to invalid username or password.")
OTHER_TENANT = Aadsts(
    50020,
    "invalid_grant",
    "User account '{upn}' from identity provider 'https://sts.windows.net/{user_tenant}/' does not exist in tenant "
    "'{tenant}' and cannot access the application '{client_id}'({name}) in that tenant. The account needs to be "
    "added as an external user in the tenant first. Sign out and sign in again with a different Azure Active "
    "Directory user account.",
)
MISSING_SECRET = Aadsts(
    7000218,
    "invalid_client",
    "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    401,
)
BAD_SECRET = Aadsts(
    7000215,
    "invalid_client",
    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not "
    "the client secret ID, for a secret added to app '{client_id}'.",
    401,
)
PUBLIC_CLIENT_SECRET = Aadsts(
    700025,
    "invalid_client",
    "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.",
    401,
)
UNSUPPORTED_GRANT = Aadsts(70003, "unsupported_grant_type", "The app requested an unsupported grant type '{value}'.")
MALFORMED_CODE = Aadsts(9002313, "invalid_grant", "Invalid request. Request is malformed or invalid.")
CODE_REDEEMED = Aadsts(
    54005,
    "invalid_grant",
    "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing "
    "refresh token.",
)
CODE_EXPIRED = Aadsts(
    70008,
    "invalid_grant",
    "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive "
    "authorization request for this user and resource.",
)
OTHER_CLIENT = Aadsts(700007, "invalid_grant", "The grant was issued for a different client id.")
INVALID_REFRESH = Aadsts(
    70000, "invalid_grant", "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid."
)
REPLAYED_REFRESH = Aadsts(
    70000,
    "invalid_grant",
    "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid. The refresh token "
    "was already redeemed and the emulator's strict_refresh_rotation is on (stricter than Entra ID).",
)
REFRESH_EXPIRED = Aadsts(
    700082,
    "invalid_grant",
    "The refresh token has expired due to inactivity. The token was issued on {issued} and was inactive for {idle}.",
)
REVOKED = Aadsts(
    50173,
    "invalid_grant",
    "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have "
    "changed or reset their password. The grant was issued on '{issued}' and the TokensValidFrom date (before "
    "which tokens are not valid) for this user is '{valid_from}'.",
)
CONSENT_REQUIRED = Aadsts(
    65001,
    "invalid_grant",
    "The user or administrator has not consented to use the application with ID '{client_id}' named '{name}'. "
    "Send an interactive authorization request for this user and resource.",
    suberror="consent_required",
)
MFA_REQUIRED = Aadsts(
    50076,
    "interaction_required",
    "Due to a configuration change made by your administrator, or because you moved to a new location, you must "
    "use multi-factor authentication to access '{resource}'.",
    suberror="basic_action",
)
CLIENT_CREDENTIALS_SCOPE = Aadsts(
    1002012,
    "invalid_scope",
    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
    "/.default suffixed to the resource identifier (application ID URI).",
)
UNKNOWN_INSTANCE = Aadsts(50049, "invalid_instance", "Unknown or invalid instance.")
#: What an injected fault (or a tornado error) without an AADSTS code reports, by status.
FAULT_AADSTS = {429: 90055, 500: 50000, 502: 90033, 503: 90033, 504: 90033}
OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "access_denied", 404: "invalid_request",
                405: "invalid_request", 429: "temporarily_unavailable", 500: "server_error"}


def utc_stamp(epoch: float) -> str:
    """Entra's timestamp format: ``2024-05-01 12:00:00Z``."""
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def aadsts_message(aadsts: int, description: str) -> str:
    """``AADSTS<code>: <description>``, as error bodies and the sign-in page show an error."""
    return f"AADSTS{aadsts}: {description}"


def error_json(
    error: str, aadsts: int, description: str, suberror: str | None, trace_id: str, correlation_id: str, now: float
) -> dict[str, Any]:
    """The body of an Entra ID error answer."""
    body: dict[str, Any] = {
        "error": error,
        "error_description": (
            f"{aadsts_message(aadsts, description)}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}"
            f"\r\nTimestamp: {utc_stamp(now)}"
        ),
        "error_codes": [aadsts],
        "timestamp": utc_stamp(now),
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    if suberror:
        body["suberror"] = suberror
    return body


class EntraHandler(EmulatorHandler):
    """Entra ID's dialect: OAuth error JSON with AADSTS codes, no caching of answers."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        self.set_header("Cache-Control", "no-store, no-cache")
        self.set_header("Pragma", "no-cache")
        client_request_id = self.request.headers.get("client-request-id")
        if client_request_id:
            self.set_header("client-request-id", client_request_id)

    @property
    def correlation_id(self) -> str:
        """The client's ``client-request-id`` (MSAL sends one), else an id of our own, as Entra does."""
        if not hasattr(self, "_correlation_id"):
            self._correlation_id = self.request.headers.get("client-request-id") or str(uuid.uuid4())
        return self._correlation_id

    def error_fields(self, error: str, aadsts: int, description: str, suberror: str | None) -> dict[str, Any]:
        """:func:`error_json` for this request (its trace and correlation ids, now)."""
        return error_json(error, aadsts, description, suberror, self.request_id, self.correlation_id, self.state.now())

    def default_error_code(self, status: int) -> str:
        return OAUTH_ERRORS.get(status, "temporarily_unavailable" if status >= 500 else "invalid_request")

    def error_body(self, error: ServiceError) -> tuple[str, bytes]:
        aadsts = error.extra.get("aadsts") or FAULT_AADSTS.get(error.status, 90033)
        body = self.error_fields(error.code, aadsts, error.message, error.extra.get("suberror"))
        return "application/json; charset=utf-8", json.dumps(body).encode()

    def _handle_request_exception(self, e: BaseException) -> None:
        if isinstance(e, EntraError):
            e = ServiceError(e.status, e.error, e.description, aadsts=e.aadsts, suberror=e.suberror)
        super()._handle_request_exception(e)
