"""Group membership from Microsoft Graph, for tokens that carry the overage claim instead of groups."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado import web


class GraphGroups:
    """Resolve the signed-in user's group ids with ``POST /v1.0/me/getMemberObjects``."""

    def __init__(self, graph_url: str, ca_certs: str | None = None, timeout: float = 20.0) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.ca_certs = ca_certs
        self.timeout = timeout

    async def member_groups(self, graph_token: str) -> set[str]:
        request = HTTPRequest(
            f"{self.graph_url}/v1.0/me/getMemberObjects",
            method="POST",
            body=json.dumps({"securityEnabledOnly": False}),
            headers={"Authorization": f"Bearer {graph_token}", "Content-Type": "application/json"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            ca_certs=self.ca_certs,
        )
        try:
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            raise web.HTTPError(
                503 if e.code >= 500 or e.code == 599 else 403,
                f"Could not read your group membership from Microsoft Graph (HTTP {e.code}). "
                "The app needs the GroupMember.Read.All delegated permission.",
            ) from None
        return set(json.loads(response.body).get("value", []))
