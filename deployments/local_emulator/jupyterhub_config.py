"""JupyterHub against the local Azure emulator (what `make demo` runs).

Everything Azure is the emulator: sign-in at its Entra ID page. Secrets and
endpoints come from the environment, set by ``python -m aml_jupyterhub.emulator.demo``:

- AML_EMULATOR_ENDPOINTS  path of the JSON line the emulator printed
- AML_CLIENT_ID / AML_CLIENT_SECRET  the emulated app registration
- JUPYTERHUB_CRYPT_KEY    encrypts auth_state (the user's tokens)
- AML_DEMO_HOME           where the demo users' home directories go
- AML_DEMO_HUB_PORT       the hub's public port (default 8000)
- AML_DEMO_HUB_API_PORT / AML_DEMO_PROXY_API_PORT  the hub's and the proxy's internal ports
                          (default: JupyterHub's 8081 and 8001; the demo launcher picks free ones)
- AML_USERSPACE_ACCOUNT_KEY  the emulated storage account's key (the hub's own credential for shares)
- AML_DEMO_SPAWNER        "aml" (default) or "simple" (local processes)
- AML_POLL_INTERVAL / AML_ACTIVITY_INTERVAL  seconds between compute lists / instance activity reports
                          (default 5 / the spawner's 60; tests shorten them)

Sign-in is the delegated Entra ID authenticator; each server is the user's own
compute instance, with their private share mounted at ~/userfiles.
"""

import json
import os

c = get_config()  # noqa: F821 (provided by JupyterHub)

endpoints = json.loads(open(os.environ["AML_EMULATOR_ENDPOINTS"]).read())["emulator"]
tenant_id = "contoso.example"
port = int(os.environ.get("AML_DEMO_HUB_PORT", "8000"))
hub_url = f"http://127.0.0.1:{port}"

c.JupyterHub.bind_url = hub_url
c.JupyterHub.public_url = hub_url  # JupyterLab's Hub menu on the instances links here
c.JupyterHub.hub_ip = "127.0.0.1"
if os.environ.get("AML_DEMO_HUB_API_PORT"):
    c.JupyterHub.hub_port = int(os.environ["AML_DEMO_HUB_API_PORT"])
if os.environ.get("AML_DEMO_PROXY_API_PORT"):
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(os.environ['AML_DEMO_PROXY_API_PORT'])}"
c.JupyterHub.cleanup_servers = True

# -- sign-in: delegated Entra ID (emulated) -----------------------------------
from aml_jupyterhub.auth import configure_token_broker  # noqa: E402
from aml_jupyterhub.emulator.core.config import default_config  # noqa: E402

c.JupyterHub.authenticator_class = "azuread-delegated"
auth = c.AzureAdDelegatedAuthenticator
auth.authority_host = endpoints["authority"]
auth.tenant_id = tenant_id
auth.client_id = os.environ["AML_CLIENT_ID"]
auth.client_secret = os.environ["AML_CLIENT_SECRET"]
auth.oauth_callback_url = f"{hub_url}/hub/oauth_callback"
auth.ca_certs = endpoints["ca_bundle"]
auth.graph_api_url = endpoints["graph"]
# The demo directory's group object ids -> JupyterHub group names.
auth.group_names = {g.id: g.display_name for g in default_config().groups}
auth.allowed_groups = {"data-scientists", "jupyterhub-admins"}
auth.admin_groups = {"jupyterhub-admins"}
c.Authenticator.refresh_pre_spawn = True
configure_token_broker(c)

# -- servers ------------------------------------------------------------------------------
# Default: each user's own compute instance in the emulated Azure ML (the emulator runs each
# instance's startup script and a real JupyterLab). AML_DEMO_SPAWNER=simple: local processes.
if os.environ.get("AML_DEMO_SPAWNER", "aml") == "aml":
    directory = default_config()
    c.JupyterHub.spawner_class = "aml"
    c.JupyterHub.cleanup_servers = False  # instances outlive the hub process; a restart reconnects
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = 3
    c.AMLSpawner.arm_url = endpoints["arm"]
    c.AMLSpawner.ca_bundle = endpoints["ca_bundle"]
    c.AMLSpawner.hub_id = "demo"
    # Instances reach the hub at its public URL (through the proxy), as they would in Azure; its
    # internal port may change from one start to the next, and is written into each new instance.
    c.AMLSpawner.instance_hub_url = f"{hub_url}/hub/api"
    c.AMLSpawner.poll_interval_seconds = float(os.environ.get("AML_POLL_INTERVAL", "5"))
    if os.environ.get("AML_ACTIVITY_INTERVAL"):
        c.AMLSpawner.activity_interval_seconds = float(os.environ["AML_ACTIVITY_INTERVAL"])
    c.AMLSpawner.workspaces = {
        w.name: {
            "subscription_id": w.subscription_id,
            "resource_group": w.resource_group,
            "workspace_name": w.name,
            "location": w.location,
            "display_name": w.name.replace("ws-", "").title(),
        }
        for w in directory.workspaces
    }
    c.AMLSpawner.profiles = [
        {"key": "small", "display_name": "Small CPU (4 cores, 14 GB)", "workspace": "ws-research",
         "vm_size": "Standard_DS3_v2", "idle_shutdown_minutes": 60, "default": True},
        {"key": "memory", "display_name": "Memory optimised (4 cores, 32 GB)", "workspace": "ws-analytics",
         "vm_size": "Standard_E4ds_v4", "idle_shutdown_minutes": 30},
        {"key": "gpu", "display_name": "GPU (NC6s v3)", "workspace": "ws-research",
         "vm_size": "Standard_NC6s_v3", "groups": ["spark-users"], "description": "Needs GPU quota."},
    ]
    # Spark kernels: Fabric's Livy API (emulated) with the user's own token; Apache Livy on "memory".
    fabric_lakehouse = "v1/workspaces/5b0e4f0c-3a51-4c1e-9d4f-2f4b8a0c6d11/lakehouses/9e3c1d27-6f0a-4b8e-a5d2-7c1b0e4f3a99"
    c.AMLSpawner.spark = {
        "backend": "fabric",
        "endpoint": f"{endpoints['fabric']}/{fabric_lakehouse}/livyapi/versions/2023-12-01",
        "timeout_seconds": 60,
        "session_name_prefix": "demo",
        "spark_conf": {"spark.fabric.environmentDetails": '{"id": "0c4e2b1a-demo-environment"}'},
    }
    for profile in c.AMLSpawner.profiles:
        if profile["key"] == "memory":
            profile["spark"] = {"backend": "apache", "endpoint": endpoints["livy"], "spark_conf": {}}
    # Settings for the example notebooks' code on every instance (not secrets).
    c.AMLSpawner.instance_settings = {"DATABRICKS_HOST": endpoints["databricks"]}
    # The private user space: one share per user in the emulated storage account. The key stays in
    # the hub; instances get a share-scoped SAS through the instance API (docs/user-space.md).
    if os.environ.get("AML_USERSPACE_ACCOUNT_KEY"):
        storage = directory.storage_accounts[0]
        c.UserSpace.account_url = f"{endpoints['files']}/{storage.name}"
        c.UserSpace.account_key = os.environ["AML_USERSPACE_ACCOUNT_KEY"]
        c.UserSpace.ca_bundle = endpoints["ca_bundle"]
        c.UserSpace.quota_gib = 10
else:
    c.JupyterHub.spawner_class = "simple"
    c.Spawner.home_dir_template = os.path.join(os.environ["AML_DEMO_HOME"], "{username}")
    c.Spawner.default_url = "/lab"
    if os.geteuid() == 0:  # containers and CI machines often run everything as root
        c.Spawner.args = ["--allow-root"]
