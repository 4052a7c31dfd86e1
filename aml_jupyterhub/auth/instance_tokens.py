"""Hub API tokens issued to compute instances: what they may do, and their end with the instance.

An instance's token is owned by its user and carries only the broker scope
and ``users:activity`` for that user (the instance reports Jupyter activity to
the hub, which culls idle servers). Its note names the compute instance, so
stopping or deleting the server, or the instance disappearing from Azure,
deletes every token it was given at once (:func:`revoke_instance_tokens`).
"""

from __future__ import annotations

from typing import Any

from jupyterhub import orm

from .handlers import BROKER_SCOPE
from .provenance import new_self_held_token, unmarked_note

INSTANCE_TOKEN_SECONDS = 3600
NOTE_PREFIX = "aml-jupyterhub instance "


def instance_token_scopes(username: str) -> list[str]:
    return [f"{BROKER_SCOPE}!user={username}", f"users:activity!user={username}"]


def issue_instance_token(user: Any, compute_name: str) -> str:
    """A new hub API token for the instance ``compute_name`` of ``user`` (a JupyterHub ``User``),
    marked as held by that user (the broker serves only such tokens: :mod:`.provenance`)."""
    return new_self_held_token(
        user,
        note=NOTE_PREFIX + compute_name, expires_in=INSTANCE_TOKEN_SECONDS, scopes=instance_token_scopes(user.name)
    )


def revoke_instance_tokens(db: Any, orm_user: Any, compute_name: str) -> int:
    """Delete every hub token issued to instance ``compute_name`` of ``orm_user``; returns how many."""
    note = NOTE_PREFIX + compute_name
    candidates = db.query(orm.APIToken).filter(orm.APIToken.user_id == orm_user.id, orm.APIToken.note.startswith(note)).all()
    rows = [row for row in candidates if unmarked_note(row.note) == note]  # the provenance mark follows the note
    for row in rows:
        db.delete(row)
    if rows:
        db.commit()
    return len(rows)
