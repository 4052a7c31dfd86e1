"""A Fabric PySpark kernel whose tokens come from the real hub's token broker (the plug-in's default source).

The kernel gets only what a user's server gets: the hub API URL and a hub API
token the user made for themself (``JUPYTERHUB_API_URL``/``JUPYTERHUB_API_TOKEN``); the
plug-in calls :func:`aml_jupyterhub.tokens.get_token` ("fabric"), the hub
redeems alice's refresh token at the emulated Entra ID, and Fabric sees alice.
"""

from __future__ import annotations

import jwt

from aml_jupyterhub.emulator.core.config import default_config
from aml_jupyterhub.emulator.core.server import endpoints_line
from support.hub import HubProcess
from support.own_tokens import own_token
from support.signin import hub_sign_in

ALICE = default_config().user("alice@contoso.example")


def test_fabric_kernel_with_tokens_from_the_hub_broker(emulator, ca_bundle, fabric_endpoint, spark_kernel, livy_control,
                                                       tmp_path):
    endpoints_file = tmp_path / "endpoints.json"
    endpoints_file.write_text(endpoints_line(emulator.endpoints))
    hub = HubProcess(tmp_path / "hub", endpoints_file).start()
    try:
        session, callback = hub_sign_in(hub.url, ALICE.username, ca_bundle)
        assert callback.status_code == 302, callback.text[:300]
        api_token = own_token(hub, session, ALICE.username)
        since = livy_control.mark()
        kernel = spark_kernel(
            {"backend": "fabric", "endpoint": fabric_endpoint, "timeout_seconds": 20,
             "token_source": "aml_jupyterhub.tokens:get_token"},
            env={"JUPYTERHUB_API_URL": f"{hub.url}/hub/api", "JUPYTERHUB_API_TOKEN": api_token},
        )
        result = kernel.run("spark.range(6).selectExpr('sum(id)').first()[0]")
        assert result.status == "ok" and "15" in result.stdout, result.text

        [session] = [s for s in livy_control.livy_sessions("fabric") if s["owner"] == ALICE.oid][-1:]
        assert session["state"] == "idle"
        fabric_calls = livy_control.requests(since=since, service="fabric")
        assert fabric_calls and {r["principal"] for r in fabric_calls} == {ALICE.username}
        assert all(r["status"] in (200, 202) for r in fabric_calls)
        # the token came through the hub: it redeemed alice's refresh token for the Fabric scopes
        token_calls = [r for r in livy_control.requests(since=since, service="authority") if "token" in r["route"].lower()]
        assert token_calls and all(r["status"] == 200 for r in token_calls)
        minted = hub.api("GET", "/aml/tokens/fabric", token=api_token).json()["access_token"]
        assert jwt.decode(minted, options={"verify_signature": False})["scp"].split() == [
            "Code.AccessFabric.All", "Code.AccessStorage.All", "Lakehouse.Execute.All", "Lakehouse.Read.All"]
        assert minted[:24] not in hub.logs()
        kernel.shutdown()
    finally:
        hub.stop()
