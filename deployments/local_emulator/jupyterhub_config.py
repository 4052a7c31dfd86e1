"""JupyterHub against the local Azure emulator (what `make demo` runs).

Everything Azure is the emulator: sign-in at its Entra ID page. Secrets and
endpoints come from the environment, set by ``python -m aml_jupyterhub.emulator.demo``:

- AML_EMULATOR_ENDPOINTS  path of the JSON line the emulator printed
- AML_CLIENT_ID / AML_CLIENT_SECRET  the emulated app registration
- JUPYTERHUB_CRYPT_KEY    encrypts auth_state (the user's tokens)
- AML_DEMO_HOME           where the demo users' home directories go
- AML_DEMO_HUB_PORT       the hub's public port (default 8000)

Until the AML spawner lands this uses JupyterHub's simple local-process spawner.
"""

import json
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)

endpoints = json.loads(open(os.environ["AML_EMULATOR_ENDPOINTS"]).read())["emulator"]
tenant_id = "contoso.example"
port = int(os.environ.get("AML_DEMO_HUB_PORT", "8000"))
hub_url = f"http://127.0.0.1:{port}"

c.JupyterHub.bind_url = hub_url
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.cleanup_servers = True

# -- sign-in: Entra ID v2 (emulated) ------------------------------------------
c.JupyterHub.authenticator_class = "azuread"
c.AzureAdOAuthenticator.client_id = os.environ["AML_CLIENT_ID"]
c.AzureAdOAuthenticator.client_secret = os.environ["AML_CLIENT_SECRET"]
c.AzureAdOAuthenticator.tenant_id = tenant_id
c.AzureAdOAuthenticator.authorize_url = f"{endpoints['authority']}/{tenant_id}/oauth2/v2.0/authorize"
c.AzureAdOAuthenticator.token_url = f"{endpoints['authority']}/{tenant_id}/oauth2/v2.0/token"
c.AzureAdOAuthenticator.oauth_callback_url = f"{hub_url}/hub/oauth_callback"
c.AzureAdOAuthenticator.scope = ["openid", "profile", "offline_access", "https://management.azure.com/user_impersonation"]
c.AzureAdOAuthenticator.username_claim = "preferred_username"
c.AzureAdOAuthenticator.http_request_kwargs = {"ca_certs": endpoints["ca_bundle"]}
c.AzureAdOAuthenticator.enable_auth_state = True
c.AzureAdOAuthenticator.allow_all = True
c.AzureAdOAuthenticator.admin_users = {"carol@contoso.example"}

# -- servers: local processes until the AML spawner lands -----------------------
c.JupyterHub.spawner_class = "simple"
c.Spawner.home_dir_template = os.path.join(os.environ["AML_DEMO_HOME"], "{username}")
c.Spawner.default_url = "/lab"
