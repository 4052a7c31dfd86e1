"""Getting the browser from ``/user/<name>/...`` to the user's compute instance.

A compute instance's Jupyter sits behind the Azure ML gateway, which only the
assigned user's own browser session can pass. So the hub does not proxy it:
every running server's proxy route points at ONE small redirect server in the
hub process (one port for the whole hub, no process per user), which answers
``302`` to the same path on that user's compute instance::

    /user/alice/lab/tree/x.ipynb  ->  https://<ci>.<region>.instances.azureml.ms/lab/tree/x.ipynb

JupyterHub's "is it up?" check (``GET <url>/api``) gets a 302 too, which it
counts as up; the spawner returns only once the instance is Running anyway.
See docs/connection.md for the modes considered.
"""

from __future__ import annotations

import html
import socket
from collections.abc import Awaitable, Callable
from typing import ClassVar
from urllib.parse import quote, unquote, urlsplit

from jupyterhub import __version__
from tornado import httpserver, netutil, web


class _Redirect(web.RequestHandler):
    def initialize(self, routes: dict[str, str], watches: dict[str, tuple[Callable[[], Awaitable[str | None]], str]]) -> None:
        self.routes = routes
        self.watches = watches

    def _target(self) -> str | None:
        path = self.request.path
        prefix = next((p for p in sorted(self.routes, key=len, reverse=True) if path.startswith(p)), None)
        if prefix is None:
            return None
        return redirect_location(self.routes[prefix], path[len(prefix):], self.request.query)

    async def get(self) -> None:
        if await self._not_serving():
            return
        target = self._target()
        if target is None:
            raise web.HTTPError(404, "This server is not running, or that is not a path on it.")
        self.set_header("Cache-Control", "no-store")
        # The hub's own code answers here: say so, or the hub's up-check logs "likely < 0.8" on every spawn.
        self.set_header("X-JupyterHub-Version", __version__)
        self.redirect(target, status=302)

    head = post = get

    async def _not_serving(self) -> bool:
        """Answer with a page back to the hub when the instance does not serve Jupyter (no dead end)."""
        prefix = next((p for p in sorted(self.watches, key=len, reverse=True) if self.request.path.startswith(p)), None)
        state = await self.watches[prefix][0]() if prefix else None
        if not state:
            return False
        home = self.watches[prefix][1]
        self.set_status(503)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Retry-After", "15")
        self.finish(_NOT_SERVING.format(state=html.escape(state), home=html.escape(home, quote=True)))
        return True


_NOT_SERVING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Your compute instance is not running</title></head>
<body><h1>Your compute instance is not running</h1>
<p>Azure reports it <strong>{state}</strong> (stopped for being idle, from the Azure portal, or by Azure).
The hub will show the server stopped within a few seconds.</p>
<p><a href="{home}">Back to the hub</a> to start it again.</p></body></html>
"""

# What may stand in a Location's path and query as is; anything else is percent-encoded.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def redirect_location(root: str, rest: str, query: str = "") -> str | None:
    """``root`` (an instance's ``https://host/base/``) + the request path after the route's prefix, or None.

    The answer always has ``root``'s scheme, host and base path: ``rest`` is
    only ever appended below ``root`` (leading slashes dropped, anything
    unusual percent-encoded). A path a browser could read as leaving that base
    (a backslash, a control character, a ``.``/``..`` segment, also in
    percent-encoded form) gets None: the caller answers 404.
    """
    decoded = unquote(rest)
    if "\\" in decoded or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        return None
    if any(segment in (".", "..") for segment in decoded.split("/")):
        return None
    location = root + quote(rest.lstrip("/"), safe=_PATH_SAFE)
    if query:
        location += "?" + quote(query, safe=_QUERY_SAFE)
    base, target = urlsplit(root), urlsplit(location)
    if (target.scheme, target.netloc) != (base.scheme, base.netloc) or not target.path.startswith(base.path):
        return None
    return location


APP_SUFFIXES = ("/lab", "/tree", "/jupyter")


def instance_root(endpoint_uri: str) -> str:
    """The root of an instance's Jupyter from an application endpoint (``.../lab`` -> ``.../``)."""
    parts = urlsplit(endpoint_uri)
    path = parts.path.rstrip("/")
    for suffix in APP_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    return f"{parts.scheme}://{parts.netloc}{path}/"


class Redirector:
    """The hub-wide redirect server; spawners register ``/user/<name>/[<server>/]`` -> instance base URL."""

    _instance: ClassVar[Redirector | None] = None

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, str] = {}
        self.watches: dict[str, tuple[Callable[[], Awaitable[str | None]], str]] = {}
        app = web.Application([(r".*", _Redirect, {"routes": self.routes, "watches": self.watches})], log_function=lambda h: None)
        sockets = netutil.bind_sockets(port, host, family=socket.AF_INET)
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}"
        self._server = httpserver.HTTPServer(app)
        self._server.add_sockets(sockets)

    @classmethod
    def shared(cls, host: str = "127.0.0.1", port: int = 0) -> Redirector:
        if cls._instance is None:
            cls._instance = cls(host, port)
        return cls._instance

    def add(self, base_url: str, instance_url: str) -> None:
        """Route ``base_url`` (e.g. ``/user/alice/``) to the root of the instance behind ``instance_url``."""
        self.routes[base_url] = instance_root(instance_url)

    def watch(self, base_url: str, not_serving: Callable[[], Awaitable[str | None]], hub_home: str) -> None:
        """While ``not_serving()`` names a state, ``base_url`` answers a page linking to ``hub_home`` instead."""
        self.watches[base_url] = (not_serving, hub_home)

    def remove(self, base_url: str) -> None:
        self.routes.pop(base_url, None)
        self.watches.pop(base_url, None)
