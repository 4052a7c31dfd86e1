"""The JSON bodies the hub's own APIs accept: exactly the expected fields, or a 400 that says why."""

from __future__ import annotations

import json
from typing import Any

from tornado import web

MAX_BODY_BYTES = 64 * 1024  # the largest body any of these APIs needs (a managed-identity token is ~2 KB)


def json_fields(body: bytes, fields: dict[str, type], usage: str) -> dict[str, Any]:
    """``body`` parsed as a JSON object holding exactly ``fields`` (name -> type; strings must not be empty).

    Anything else (not JSON, not UTF-8, another shape, a missing, unknown or
    mistyped field, an oversized body) raises a 400 whose message names the
    problem and ends with ``usage``; it never echoes the body.
    """

    def refuse(problem: str) -> web.HTTPError:
        return web.HTTPError(400, f"{problem}. {usage}")

    if len(body) > MAX_BODY_BYTES:
        raise refuse(f"The request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else None
    except (UnicodeDecodeError, ValueError):
        raise refuse("The request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise refuse("The request body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise refuse(f"Unknown fields {[u[:40] for u in unknown[:5]]}")
    for name, kind in fields.items():
        value = data.get(name)
        if value is None:
            raise refuse(f"The field {name!r} is missing")
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise refuse(f"The field {name!r} must be a {_json_type(kind)}")
        if kind is str and not value.strip():
            raise refuse(f"The field {name!r} is empty")
    return data


def _json_type(kind: type) -> str:
    return {str: "string", int: "number", float: "number", bool: "boolean", list: "list", dict: "object"}.get(kind, kind.__name__)
