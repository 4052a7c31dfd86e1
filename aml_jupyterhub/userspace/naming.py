"""Share names: valid for Azure Files, stable for a user, distinct between users, free of personal data."""

from __future__ import annotations

import hashlib
import re
import unicodedata

PREFIX = "u"
SHARE_RULE = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$")


def share_name(username: str, oid: str | None = None) -> str:
    """The user's share: ``u-<object id>`` from the Entra object id (stable across renames).

    Without an object id (a hub that does not sign in with Entra ID), a
    readable slug of the username plus a hash of the exact username, so
    ``Alice``, ``alice`` and ``alice.`` get distinct shares.
    Azure's rules: 3-63 characters, lowercase letters, digits and single hyphens,
    starting and ending with a letter or digit.
    """
    if oid:
        compact = re.sub(r"[^0-9a-f]", "", oid.lower())
        if len(compact) == 32:
            return f"{PREFIX}-{compact}"
    ascii_name = unicodedata.normalize("NFKD", username).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[:40].strip("-") or "user"
    digest = hashlib.sha256(username.encode()).hexdigest()[:12]
    return f"{PREFIX}-{slug}-{digest}"


def is_valid_share_name(name: str) -> bool:
    return 3 <= len(name) <= 63 and bool(SHARE_RULE.match(name))
