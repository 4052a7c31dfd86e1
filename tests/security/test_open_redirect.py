"""Issue 15 item 4: the hub-wide redirect server only ever sends a browser to the instance's own origin.

The pure function is checked on hostile paths; then the same paths go, byte
for byte, through a real hub's proxy to a running server's route.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from aml_jupyterhub.spawner.connection import redirect_location
from support.aml_hub import ALICE, aml_hub, instances_of, signed_in, spawn, stop

ROOT = "https://jh-alice.eastus.instances.azureml.ms/"
HUB_ID = "security-redirect"

# Each is what follows /user/<name>/ in a request line, as an attacker would send it.
HOSTILE = [
    "/evil.example/x",
    "//evil.example/x",
    "///evil.example",
    "\\evil.example",
    "/\\evil.example",
    "%5C%5Cevil.example",
    "%2F%2Fevil.example",
    "%2f%2fevil.example/%2e%2e",
    "https://evil.example/",
    "https:evil.example",
    "javascript:alert(1)",
    "@evil.example",
    "..//evil.example",
    "../../evil.example",
    "%2e%2e/%2e%2e/evil.example",
    "lab/../../../evil.example",
    ".%2e/evil.example",
    "%09/evil.example",
    "%0d%0aLocation:%20https://evil.example",
    "\t//evil.example",
    "%00//evil.example",
    "%E2%80%AE//evil.example",
    "é//evil.example",
]


def same_origin(location: str, root: str = ROOT) -> bool:
    target, base = urlsplit(location), urlsplit(root)
    return (target.scheme, target.netloc) == (base.scheme, base.netloc) and "\\" not in location


@pytest.mark.parametrize("rest", HOSTILE)
def test_the_location_is_the_instance_or_nothing(rest):
    for query in ("", "next=//evil.example&a=%0d%0a#frag"):
        location = redirect_location(ROOT, rest, query)
        assert location is None or (same_origin(location) and location.startswith(ROOT)), location


@pytest.mark.parametrize(
    ("rest", "query", "location"),
    [
        ("lab/tree/x.ipynb", "", ROOT + "lab/tree/x.ipynb"),
        ("lab/tree/a%20b.ipynb", "reset", ROOT + "lab/tree/a%20b.ipynb?reset"),
        ("api/contents/dir/x.py", "content=1&type=file", ROOT + "api/contents/dir/x.py?content=1&type=file"),
        ("", "", ROOT),
        ("lab/tree/has space", "", ROOT + "lab/tree/has%20space"),
        ("//evil.example/x", "", ROOT + "evil.example/x"),
    ],
)
def test_ordinary_paths_keep_working(rest, query, location):
    assert redirect_location(ROOT, rest, query) == location


@pytest.mark.parametrize("rest", ["..", "a/./b", "%2e%2e", "x\\y", "x%5cy", "a%0ab", "a\x7fb"])
def test_ambiguous_paths_are_refused(rest):
    assert redirect_location(ROOT, rest) is None


# -- through a real hub, its proxy and the emulated Azure ML --------------------------------


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = 'c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 1}\nc.AMLSpawner.reconcile_interval_seconds = 0\n'
    yield from aml_hub(emulator, tmp_path_factory.mktemp("redirect-hub"), HUB_ID, extra)


def on_the_hub(location: str, hub_url: str) -> bool:
    """A Location that stays on the hub's own origin: a path (never ``//host`` or ``/\\host``), or an
    absolute URL on the hub's public origin (JupyterHub writes those when ``public_url`` is set)."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        hub = urlsplit(hub_url)
        return (parts.scheme, parts.netloc) == (hub.scheme, hub.netloc)
    return location.startswith("/") and location[1:2] not in ("/", "\\")


def raw_get(url: str, target: str) -> tuple[int, dict[str, str]]:
    """``GET <target>`` sent byte for byte (no client-side normalisation); the status and headers."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode("utf-8"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in head[1:] if ": " in line)
    return int(head[0].split()[1]), {k.lower(): v for k, v in headers.items()}


def test_no_path_under_a_running_server_redirects_off_its_instance(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    spawn(hub, ALICE.username)
    [compute] = instances_of(fast, HUB_ID, ALICE.username)
    instance = f"https://{compute['name']}.eastus.instances.azureml.ms"
    base = f"/user/{ALICE.username}/"
    status, headers = raw_get(hub.url, base + "lab/tree/x.ipynb")
    assert status == 302 and headers["location"] == instance + "/lab/tree/x.ipynb"
    answers = {}
    for rest in HOSTILE:
        status, headers = raw_get(hub.url, base + rest)
        answers[rest] = (status, headers.get("location"))
    # The proxy resolves dot segments itself; what then leaves alice's route is answered by the hub,
    # with a path on the hub's own origin. Every other Location must be on alice's instance.
    off_origin = {rest: a for rest, a in answers.items() if a[1] and not (on_the_hub(a[1], hub.url) or same_origin(a[1], instance + "/"))}
    assert off_origin == {}
    assert all(status in (301, 302, 400, 404) for status, _ in answers.values()), answers
    stop(hub, ALICE.username)
