"""Hub API tokens a user makes for themself, the way the hub's token page does (their browser session)."""

from __future__ import annotations

import requests

from support.hub import HubProcess


def own_token(hub: HubProcess, session: requests.Session, username: str, **body) -> str:
    """``POST /hub/api/users/<username>/tokens`` with ``username``'s own signed-in browser session."""
    r = own_token_response(hub, session, username, **body)
    assert r.status_code == 201, r.text
    return r.json()["token"]


def own_token_response(hub: HubProcess, session: requests.Session, username: str, **body) -> requests.Response:
    session.get(f"{hub.url}/hub/token", timeout=30).raise_for_status()  # the page sets the _xsrf cookie
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf", "")
    return session.post(
        f"{hub.url}/hub/api/users/{username}/tokens",
        json={"note": "mine", **body},
        headers={"X-XSRFToken": xsrf},
        timeout=30,
    )
