"""Issue 15 item 6: every body the hub's own APIs accept is validated, and errors name the failing service.

A real hub (AMLSpawner), its proxy and the emulated Azure: malformed bodies on
the instance-token exchange, unknown fields in the spawn form, hostile REST
options, and a persistent Microsoft Entra ID outage while a token is minted.
"""

from __future__ import annotations

import base64
import json

import pytest
import requests

from aml_jupyterhub.spawner.profiles import ProfileError, options_from_form
from support.aml_hub import ALICE, BOB, CAROL, aml_hub, signed_in
from support.own_tokens import own_token

HUB_ID = "security-input"


@pytest.fixture(scope="module")
def hub(emulator, tmp_path_factory):
    extra = 'c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 20}\nc.AMLSpawner.reconcile_interval_seconds = 0\n'
    yield from aml_hub(emulator, tmp_path_factory.mktemp("input-hub"), HUB_ID, extra)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


UNSIGNED_WITH_LIST_KID = f"{_b64({'alg': 'RS256', 'typ': 'JWT', 'kid': ['a']})}.{_b64({'sub': 'x'})}.c2ln"

MALFORMED = [
    b"[]",
    b'"identity_token"',
    b"123",
    b"null",
    b"{",
    b"\xff\xfe{}",
    b'{"identity_token": 123}',
    b'{"identity_token": ["a"]}',
    b'{"identity_token": {"a": 1}}',
    b'{"identity_token": true}',
    b'{"identity_token": ""}',
    b'{"identity_token": "x", "user": "alice"}',
    b"{}",
    b"",
]


def test_instance_token_exchange_answers_malformed_bodies_with_400(hub):
    url = f"{hub.url}/hub/api/aml/instance-token"
    answers = {body: requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30) for body in MALFORMED}
    assert {body: r.status_code for body, r in answers.items() if r.status_code != 400} == {}
    for r in answers.values():
        message = r.json()["message"]
        assert "identity_token" in message and "Traceback" not in r.text
    bad_kid = requests.post(url, json={"identity_token": UNSIGNED_WITH_LIST_KID}, timeout=30)
    assert bad_kid.status_code == 403 and "malformed" in bad_kid.json()["message"]
    assert "Traceback" not in hub.logs().split("instance-token")[-1]


def test_the_spawn_form_refuses_unknown_fields_as_rest_does(hub, ca_bundle):
    session = signed_in(hub, BOB, ca_bundle)
    form = session.get(f"{hub.url}/hub/spawn/{BOB.username}", timeout=30)
    assert form.status_code == 200
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf", "")
    for extra in ({"vm_size": "Standard_M416ms_v2"}, {"recreate": "maybe"}, {"profile": ["small", "gpu"]}):
        data = {"_xsrf": xsrf, "profile": "small", **extra}
        r = session.post(f"{hub.url}/hub/spawn/{BOB.username}", data=data, allow_redirects=False, timeout=30)
        assert r.status_code == 400, (extra, r.status_code)
        assert "Unknown options" in r.text or "must be" in r.text
        assert hub.api("GET", f"/users/{BOB.username}").json()["servers"] == {}
    rest = hub.api("POST", f"/users/{BOB.username}/server", json={"user_options": {"profile": "small", "vm_size": "x"}})
    assert rest.status_code == 400 and "Unknown options" in rest.json()["message"]


@pytest.mark.parametrize(
    "options",
    [{"profile": 5}, {"profile": ["small"]}, {"profile": {"a": 1}}, {"profile": "small", "recreate": "yes"},
     {"profile": "small", "recreate": None}, [1, 2], "small"],
)
def test_rest_options_of_the_wrong_type_are_refused(hub, ca_bundle, options):
    signed_in(hub, CAROL, ca_bundle)
    r = hub.api("POST", f"/users/{CAROL.username}/server", json={"user_options": options})
    assert r.status_code == 400, r.text
    assert "Traceback" not in r.text
    assert hub.api("GET", f"/users/{CAROL.username}").json()["servers"] == {}


def test_the_broker_names_an_entra_outage(hub, fast, ca_bundle):
    token = own_token(hub, signed_in(hub, ALICE, ca_bundle), ALICE.username)
    fast.inject(service="authority", path="token", status=503, error_code="temporarily_unavailable", count=None)
    broker = hub.api("GET", "/aml/tokens/storage", token=token)
    assert broker.status_code == 502, broker.text
    assert "Microsoft Entra ID" in broker.json()["message"]


def test_a_spawn_names_an_entra_outage_not_azure_ml(hub, fast, ca_bundle):
    signed_in(hub, ALICE, ca_bundle)
    fast.inject(service="authority", path="token", status=503, error_code="temporarily_unavailable", count=None)
    r = hub.api("POST", f"/users/{ALICE.username}/server", json={"user_options": {"profile": "small"}})
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert "Microsoft Entra ID" in message and "Azure Machine Learning" not in message, message
    assert hub.api("GET", f"/users/{ALICE.username}").json()["servers"] == {}


@pytest.mark.parametrize(
    ("formdata", "options"),
    [
        ({}, {}),
        ({"_xsrf": ["x"], "profile": ["small"]}, {"profile": "small"}),
        ({"profile": ["memory"], "recreate": ["yes"]}, {"profile": "memory", "recreate": True}),
        ({"profile": [""], "recreate": ["off"]}, {"recreate": False}),
    ],
)
def test_form_fields_become_options(formdata, options):
    assert options_from_form(formdata) == options


@pytest.mark.parametrize(
    "formdata",
    [{"vm_size": ["x"]}, {"profile": ["a", "b"]}, {"recreate": ["maybe"]}, {"profile_file": [{"body": b""}]}, {"profile": [b"x"]}],
)
def test_form_fields_that_are_refused(formdata):
    with pytest.raises(ProfileError):
        options_from_form(formdata)
