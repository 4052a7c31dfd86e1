"""Signing keys and JWTs the way Entra ID issues them, and bearer validation for resources."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    private_pem: bytes
    cert_der: bytes

    @classmethod
    def generate(cls) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "accounts.accesscontrol.windows.net")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        # Entra uses the certificate thumbprint (x5t) as the kid.
        kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()  # noqa: S324
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return cls(kid=kid, private_pem=pem, cert_der=der)

    @cached_property
    def private_key(self):
        """Parsed once: loading a PEM RSA key checks it, which costs more than signing with it."""
        return serialization.load_pem_private_key(self.private_pem, password=None)

    @cached_property
    def public_key(self):
        """Parsed once: every emulated request with a bearer token validates against it."""
        return self.private_key.public_key()

    def jwk(self, issuer: str | None = None) -> dict[str, Any]:
        numbers = self.public_key.public_numbers()
        jwk = {
            "kty": "RSA",
            "use": "sig",
            "kid": self.kid,
            "x5t": self.kid,
            "n": _b64url_uint(numbers.n),
            "e": _b64url_uint(numbers.e),
            "x5c": [base64.b64encode(self.cert_der).decode()],
        }
        if issuer:
            jwk["issuer"] = issuer
        return jwk

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def to_dict(self) -> dict[str, str]:
        return {
            "kid": self.kid,
            "private_pem": self.private_pem.decode(),
            "cert_der": base64.b64encode(self.cert_der).decode(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> SigningKey:
        return cls(d["kid"], d["private_pem"].encode(), base64.b64decode(d["cert_der"]))


class TokenError(Exception):
    """A bearer token a resource must refuse. ``expired`` tells the two 401 flavours apart."""

    def __init__(self, message: str, *, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def unverified_claims(token: str) -> dict[str, Any]:
    """Claims of a JWT without checking it: only for logs and fault matching."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}


def validate_bearer(
    token: str, keys: list[SigningKey], audiences: set[str], now: float
) -> dict[str, Any]:
    """Check signature, audience and lifetime like an Azure resource provider does."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise TokenError("The access token is malformed.") from e
    key = next((k for k in keys if k.kid == header.get("kid")), None)
    if key is None:
        raise TokenError("The access token signature key is unknown.")
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_aud": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.PyJWTError as e:
        raise TokenError("The access token signature is invalid.") from e
    if claims.get("aud") not in audiences:
        raise TokenError(f"The access token has an invalid audience '{claims.get('aud')}'.")
    if claims.get("exp", 0) <= now:
        expired_at = dt.datetime.fromtimestamp(claims.get("exp", 0), dt.timezone.utc)
        now_utc = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        raise TokenError(
            f"The access token expiry UTC time '{expired_at:%m/%d/%Y %I:%M:%S %p}' is earlier than "
            f"current UTC time '{now_utc:%m/%d/%Y %I:%M:%S %p}'.",
            expired=True,
        )
    if claims.get("nbf", 0) > now + 300:
        raise TokenError("The access token is not yet valid.")
    return claims


def new_id() -> str:
    return str(uuid.uuid4())
