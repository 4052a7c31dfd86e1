"""The emulator's own machinery: HTTPS, endpoints line, faults, request log, persistence."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys

import pytest
import requests

from aml_jupyterhub.emulator import EmulatorThread, default_config


def test_serves_https_with_its_own_ca(emulator, ca_bundle):
    url = emulator.endpoints["control"] + "/_emulator/health"
    assert requests.get(url, verify=ca_bundle, timeout=10).json()["status"] == "ok"
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=10)  # not trusted without the emulator's CA


def test_unknown_route_is_a_logged_404(control, emulator, ca_bundle):
    since = control.mark()
    r = requests.get(emulator.endpoints["control"] + "/no/such/thing", verify=ca_bundle, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NotFound"
    assert r.headers["x-ms-request-id"]
    counts = control.request_counts(since=since, service="control")
    assert counts["by_route"].get("control GET NotFoundHandler") == 1


def test_fault_status_count_and_retry_after(control, emulator, ca_bundle):
    url = emulator.endpoints["control"] + "/_emulator/health"
    control.inject(service="control", path="/health$", status=503, retry_after=7, count=2)
    first = requests.get(url, verify=ca_bundle, timeout=10)
    second = requests.get(url, verify=ca_bundle, timeout=10)
    third = requests.get(url, verify=ca_bundle, timeout=10)
    assert [first.status_code, second.status_code, third.status_code] == [503, 503, 200]
    assert first.headers["Retry-After"] == "7"
    assert first.json()["error"]["code"] == "ServiceUnavailable"


def test_fault_connection_reset(control, emulator, ca_bundle):
    url = emulator.endpoints["control"] + "/_emulator/health"
    control.inject(path="/health$", reset=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=ca_bundle, timeout=10)
    assert requests.get(url, verify=ca_bundle, timeout=10).status_code == 200


def test_fault_latency_is_applied(control, emulator, ca_bundle):
    url = emulator.endpoints["control"] + "/_emulator/health"
    control.inject(path="/health$", latency=0.5)
    r = requests.get(url, verify=ca_bundle, timeout=10)
    assert r.status_code == 200
    assert r.elapsed.total_seconds() >= 0.5


def test_invalid_fault_spec_is_refused(control):
    with pytest.raises(requests.HTTPError) as e:
        control.inject(bogus=1)
    assert e.value.response.status_code == 400


def test_mint_token_has_azure_claims(control):
    import jwt

    token = control.mint_token("alice@contoso.example", "https://management.azure.com/user_impersonation")
    claims = jwt.decode(token, options={"verify_signature": False})
    alice = default_config().user("alice@contoso.example")
    assert claims["aud"] == "https://management.azure.com"
    assert claims["oid"] == alice.oid and claims["tid"] == alice.tenant_id
    assert claims["scp"] == "user_impersonation"
    assert claims["upn"] == "alice@contoso.example"
    assert claims["exp"] - claims["iat"] == 3600
    assert set(claims["groups"]) == set(alice.groups)


def test_clock_advance_moves_emulator_time(control):
    before = control.now()
    after = control.advance_clock(3600)
    assert 3600 <= after - before < 3660


def test_state_persists_across_restart(tmp_path):
    data = tmp_path / "state"
    first = EmulatorThread(config=default_config(), data_dir=data)
    first.start()
    first.call(lambda: first.state.section("probe").update({"kept": True}) or first.state.mark_dirty())
    kid = first.state.signing_keys[0].kid
    ca = (data / "tls" / "ca.pem").read_bytes()
    first.stop()
    second = EmulatorThread(config=default_config(), data_dir=data)
    second.start()
    try:
        assert second.state.section("probe") == {"kept": True}
        assert second.state.signing_keys[0].kid == kid  # tokens issued before stay valid
        assert (data / "tls" / "ca.pem").read_bytes() == ca  # clients' CA bundle stays valid
    finally:
        second.stop()


def test_command_line_prints_one_json_line(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "aml_jupyterhub.emulator", "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        endpoints = json.loads(line)["emulator"]
        assert set(endpoints) >= {"authority", "arm", "files", "graph", "control", "ca_bundle"}
        ctx = ssl.create_default_context(cafile=endpoints["ca_bundle"])
        assert ctx is not None
        r = requests.get(endpoints["control"] + "/_emulator/health", verify=endpoints["ca_bundle"], timeout=10)
        assert r.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
