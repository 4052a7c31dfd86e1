"""Issue 15 item 3: the broker serves a user's delegated tokens only to tokens that user holds for themself.

A real hub and proxy, the emulated Entra ID, the test's admin service (the
``tokens`` scope every hub admin has) and local servers whose startup code
asks the broker with the server's own token.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from aml_jupyterhub.auth.handlers import BROKER_SCOPE
from aml_jupyterhub.emulator.core.server import endpoints_line
from support.aml_hub import ALICE, BOB, signed_in
from support.hub import HubProcess, wait_for
from support.own_tokens import own_token, own_token_response

PROBE = """
import os, sys, urllib.error, urllib.request
request = urllib.request.Request(
    os.environ["JUPYTERHUB_API_URL"] + "/aml/tokens/storage",
    headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]},
)
try:
    status = urllib.request.urlopen(request, timeout=30).status
except urllib.error.HTTPError as e:
    status = e.code
with open(os.path.join(os.environ["BROKER_PROBE_DIR"], os.environ["JUPYTERHUB_USER"]), "w") as f:
    f.write(str(status))
os.execvp("jupyterhub-singleuser", ["jupyterhub-singleuser", *sys.argv[1:]])
"""


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("provenance-hub")
    (workdir / "probe.py").write_text(PROBE)
    probes = workdir / "probes"
    probes.mkdir()
    endpoints_file = workdir / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    extra = textwrap.dedent(f"""
        c.Spawner.cmd = [{sys.executable!r}, {str(workdir / 'probe.py')!r}]
        c.Spawner.environment = {{"BROKER_PROBE_DIR": {str(probes)!r}}}
    """)
    hub = HubProcess(workdir, endpoints_file, extra_config=extra).start()
    hub.probes = probes
    yield hub
    hub.stop()


def broker(hub, token: str):
    return hub.api("GET", "/aml/tokens/storage", token=token)


def test_a_token_an_admin_makes_for_a_user_gets_none_of_their_tokens(hub, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    for scopes in (None, [f"{BROKER_SCOPE}!user={ALICE.username}"]):
        made_by_admin = hub.user_token(ALICE.username, scopes=scopes)
        r = broker(hub, made_by_admin)
        assert r.status_code == 403, r.text
        assert "access_token" not in r.text and "made for you by someone else" in r.json()["message"]
        config = hub.api("GET", "/aml/instance-config?compute=anything", token=made_by_admin)
        assert config.status_code == 403, config.text  # refused before any lookup of alice's servers
    assert f"of {ALICE.username}: not one they hold for themself" in hub.logs()


def test_the_users_own_tokens_are_served(hub, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    mine = own_token(hub, session, ALICE.username)
    assert broker(hub, mine).status_code == 200
    # a script of hers makes another token with the first one: still hers
    r = hub.api("POST", f"/users/{ALICE.username}/tokens", token=mine, json={"note": "from my script"})
    assert r.status_code == 201, r.text
    assert broker(hub, r.json()["token"]).status_code == 200


def test_an_admin_cannot_launder_a_token_through_the_users_token_api(hub, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    made_by_admin = hub.user_token(BOB.username)  # inherits bob's `tokens!user` scope
    r = hub.api("POST", f"/users/{BOB.username}/tokens", token=made_by_admin, json={"note": "looks like bob's"})
    assert r.status_code == 201, r.text
    assert broker(hub, r.json()["token"]).status_code == 403


def test_an_admin_cannot_copy_a_users_mark_onto_another_token(hub, ca_bundle):
    session = signed_in(hub, ALICE, ca_bundle)
    mine = own_token(hub, session, ALICE.username, note="laptop")
    listed = hub.api("GET", f"/users/{ALICE.username}/tokens").json()["api_tokens"]
    note = next(t["note"] for t in listed if t["note"].startswith("laptop"))
    assert broker(hub, mine).status_code == 200
    r = hub.api("POST", f"/users/{ALICE.username}/tokens", json={"note": note})  # the admin copies the note
    assert r.status_code == 201, r.text
    copied = r.json()["token"]
    assert broker(hub, copied).status_code == 403


def test_a_user_cannot_make_tokens_for_someone_else(hub, ca_bundle):
    session = signed_in(hub, BOB, ca_bundle)
    signed_in(hub, ALICE, ca_bundle)
    assert own_token_response(hub, session, ALICE.username).status_code == 403


def test_the_users_server_token_is_served(hub, ca_bundle):
    signed_in(hub, BOB, ca_bundle)
    r = hub.api("POST", f"/users/{BOB.username}/server")
    assert r.status_code in (201, 202), r.text
    probe = hub.probes / BOB.username
    wait_for(probe.exists, 60, 0.2, "the server's broker probe")
    wait_for(lambda: probe.read_text().strip(), 10, 0.1, "the probe's answer")
    assert probe.read_text().strip() == "200"
    hub.api("DELETE", f"/users/{BOB.username}/server")
