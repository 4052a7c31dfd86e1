"""Safe, stable compute-instance names.

Azure's rules: 3-24 characters, letters, digits and ``-``, starting with a
letter, and every ``-`` followed later by a letter (so never ending in
``-<digits>``); unique across the whole Azure region. A name here is
``<prefix>-<readable user part>-<hash>``: the hash covers the hub, the user's
object id, the server name and the profile, so two users, two named servers,
two profiles or two hubs never collide, and the readable part helps admins.
"""

from __future__ import annotations

import hashlib
import re

MAX_LENGTH = 24
HASH_LENGTH = 8
_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_ALPHABET = _LETTERS + "0123456789"
NAME_RULE = re.compile(r"^[a-zA-Z](?:[a-zA-Z0-9]|-(?=.*[a-zA-Z]))*$")


def is_valid_compute_name(name: str) -> bool:
    """True when ``name`` follows Azure's compute-instance naming rules."""
    return 3 <= len(name) <= MAX_LENGTH and NAME_RULE.match(name) is not None


def _hash(*parts: str) -> str:
    """HASH_LENGTH characters of [a-z0-9], starting with a letter (so the ``-`` before it is legal)."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    chars = [_LETTERS[digest[0] % 26]] + [_ALPHABET[b % 36] for b in digest[1:HASH_LENGTH]]
    return "".join(chars)


def readable(text: str) -> str:
    """Lowercase letters and digits of ``text`` (the part before any ``@``)."""
    return re.sub(r"[^a-z0-9]", "", text.split("@", 1)[0].lower())


def compute_instance_name(prefix: str, username: str, user_oid: str, server_name: str, profile: str, hub_id: str) -> str:
    """The compute-instance name for one user's server with one profile on one hub."""
    prefix = readable(prefix)
    if not prefix or prefix[0] not in _LETTERS:
        raise ValueError(f"Compute name prefix {prefix!r} must start with a letter")
    suffix = _hash(hub_id, user_oid, server_name, profile)
    room = MAX_LENGTH - len(prefix) - len(suffix) - 2
    if room < 1:
        raise ValueError(f"Compute name prefix {prefix!r} is too long")
    user_part = readable(username)[:room] or "u"
    name = f"{prefix}-{user_part}-{suffix}"
    assert is_valid_compute_name(name), name
    return name
