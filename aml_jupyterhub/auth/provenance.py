"""Which hub API tokens a user holds for themself: the only ones the token broker serves.

JupyterHub lets anyone with the ``tokens`` scope (every hub admin) create an API
token owned by another user, and records no reliable creator (the note is free
text). So the hub marks, when it makes them, the tokens it knows a user holds
for themself:

- a token the user creates (``POST /hub/api/users/<name>/tokens``, the token
  page) while signed in with their own browser session, or with a token of
  theirs that is itself marked;
- their server's token (``Spawner.api_token``), when the server starts;
- the token their compute instance's managed identity was traded for.

The mark is an HMAC of the token's database id, hash and owner, under a key
derived from the hub's cookie secret, appended to the token's note. Admins can
read notes through the REST API, but can neither compute a mark (they do not
hold the cookie secret) nor move one to another token (it names that token's
hash). Whoever holds the cookie secret or the database runs the hub and is
trusted with everything anyway (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from jupyterhub import orm

MARK_LABEL = "aml-jupyterhub: held by its owner"
_MARK = re.compile(r" \[" + re.escape(MARK_LABEL) + r" ([0-9a-f]{32})\]$")
_NOTE_LIMIT = 1023  # orm.APIToken.note is Unicode(1023)


def _key(settings: dict[str, Any]) -> bytes:
    secret = settings.get("cookie_secret") or b""
    if isinstance(secret, str):
        secret = secret.encode()
    if not secret:
        raise RuntimeError("The hub has no cookie secret: cannot mark tokens held by their owner.")
    return hmac.new(secret, b"aml-jupyterhub token provenance v1", hashlib.sha256).digest()


def _tag(orm_token: orm.APIToken, settings: dict[str, Any]) -> str:
    message = f"{orm_token.id}\n{orm_token.hashed}\n{orm_token.user_id}".encode()
    return hmac.new(_key(settings), message, hashlib.sha256).hexdigest()[:32]


def unmarked_note(note: str | None) -> str:
    """A token's note as it was given, without the hub's mark."""
    return _MARK.sub("", note or "")


def mark(orm_token: orm.APIToken, settings: dict[str, Any]) -> None:
    """Record that ``orm_token``'s owner holds it for themself (the caller commits)."""
    suffix = f" [{MARK_LABEL} {_tag(orm_token, settings)}]"
    note = unmarked_note(orm_token.note)
    orm_token.note = note[: _NOTE_LIMIT - len(suffix)] + suffix


def is_self_held(orm_token: orm.APIToken | None, settings: dict[str, Any]) -> bool:
    """True when ``orm_token`` is a user's token that the hub marked as held by that user."""
    if orm_token is None or orm_token.user_id is None:
        return False
    found = _MARK.search(orm_token.note or "")
    return found is not None and hmac.compare_digest(found.group(1), _tag(orm_token, settings))


def mark_token(db: Any, token: str, settings: dict[str, Any]) -> bool:
    """Mark the token whose secret is ``token``; False when the database has no such token."""
    orm_token = orm.APIToken.find(db, token) if token else None
    if orm_token is None:
        return False
    mark(orm_token, settings)
    db.commit()
    return True


def new_self_held_token(user: Any, **kwargs: Any) -> str:
    """``user.new_api_token(**kwargs)``, marked as held by ``user`` (e.g. their instance's token)."""
    token = user.new_api_token(**kwargs)
    mark_token(user.db, token, user.settings)
    return token
