"""The production shape: Entra ID sign-in, each user's compute instance created *as them*.

- Sign-in: ``azuread-delegated`` (Entra v2 + PKCE, validated id_token, groups
  mapped to JupyterHub groups) keeping each user's refresh token encrypted in
  ``auth_state``; the token broker lets the user's own code get fresh tokens.
- Servers: ``AMLSpawner`` with the user's delegated ARM token, so Azure RBAC
  decides what each user may do (docs/rbac.md); named servers allowed.
- User space: each user's private file share on every instance (docs/user-space.md;
  ``c.UserSpace``); instances fetch a share-scoped SAS through the instance API.
- Spark: ``c.AMLSpawner.spark`` when AML_SPARK_BACKEND is set (Livy or Fabric
  kernels, docs/spark.md).
- Optional: the hub database on Azure Database for PostgreSQL with Entra tokens
  (AML_HUB_DB_URL, docs/hub-database.md), TLS on the hub itself.

Before: register the app in Entra ID (docs/app-registration.md) and give users
their roles (docs/rbac.md).

What to set (environment; every variable is in deployments/env.template):

- AML_TENANT_ID, AML_CLIENT_ID, AML_CLIENT_SECRET: the app registration
- JUPYTERHUB_CRYPT_KEY: encrypts auth_state (``openssl rand -hex 32``; keep it)
- AML_HUB_PUBLIC_URL: the hub's URL as browsers see it (the redirect URI is
  ``<it>/hub/oauth_callback``); AML_HUB_BIND_URL: where the hub listens
- AML_GROUP_NAMES_FILE: JSON ``{"<Entra group object id>": "<JupyterHub group name>"}``;
  AML_ALLOWED_GROUPS / AML_ADMIN_GROUPS: comma-separated JupyterHub group names
  (defaults: data-scientists / jupyterhub-admins)
- AML_WORKSPACE_SUBSCRIPTION_ID, AML_WORKSPACE_RESOURCE_GROUP, AML_WORKSPACE_NAME,
  AML_WORKSPACE_LOCATION, optional AML_HUB_ID
- AML_USERSPACE_ACCOUNT_URL, AML_USERSPACE_ACCOUNT_KEY; optional AML_INSTANCE_HUB_URL
  (default <AML_HUB_PUBLIC_URL>/hub/api), AML_USERSPACE_QUOTA_GIB
- optional: AML_SPARK_BACKEND (apache|fabric), AML_SPARK_ENDPOINT; AML_HUB_DB_URL
  (+ AML_HUB_DB_* credential); AML_HUB_SSL_CERT and AML_HUB_SSL_KEY;
  AML_AUTHORITY_HOST, AML_GRAPH_URL, AML_ARM_URL, AML_CA_BUNDLE (other clouds, or the emulator)

Edit the profiles (VM sizes, idle shutdown, who may use which) and the limits below.
"""

import json

from aml_jupyterhub.auth import configure_token_broker

c = get_config()  # noqa: F821 (provided by JupyterHub)


from aml_jupyterhub.settings_env import optional, required, workspace_from_env  # noqa: E402


def names(variable, default):
    return {n.strip() for n in optional(variable, default).split(",") if n.strip()}


public_url = required("AML_HUB_PUBLIC_URL").rstrip("/")
ca_bundle = optional("AML_CA_BUNDLE")  # empty: the system's CA store

# -- the hub process ----------------------------------------------------------------
c.JupyterHub.bind_url = optional("AML_HUB_BIND_URL", "http://:8000")
if optional("AML_HUB_SSL_CERT"):  # else terminate TLS in front of the hub (a load balancer, nginx)
    c.JupyterHub.ssl_cert = required("AML_HUB_SSL_CERT")
    c.JupyterHub.ssl_key = required("AML_HUB_SSL_KEY")
c.JupyterHub.cleanup_servers = False  # instances outlive the hub process; a restart reconnects
c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = 3
c.JupyterHub.concurrent_spawn_limit = 50  # spawns in flight at once; more get "try again" (429)
c.JupyterHub.active_server_limit = 200  # running servers (= running compute instances) hub-wide
c.Spawner.start_timeout = 20 * 60  # a new instance takes ~5 min; setup scripts add more
c.Spawner.http_timeout = 60

if optional("AML_HUB_DB_URL"):  # e.g. postgresql+psycopg://aml-jupyterhub@myserver.postgres.database.azure.com/jupyterhub
    from aml_jupyterhub.hubdb import configure_entra_db

    c.EntraDatabaseAuth.sslmode = "verify-full"
    c.EntraDatabaseAuth.sslrootcert = "system"
    configure_entra_db(c, required("AML_HUB_DB_URL"))  # credential from AML_HUB_DB_* variables

# -- sign-in: delegated Entra ID -------------------------------------------------------
c.JupyterHub.authenticator_class = "azuread-delegated"
auth = c.AzureAdDelegatedAuthenticator
auth.tenant_id = required("AML_TENANT_ID")
auth.client_id = required("AML_CLIENT_ID")
auth.client_secret = required("AML_CLIENT_SECRET")
auth.oauth_callback_url = f"{public_url}/hub/oauth_callback"
auth.authority_host = optional("AML_AUTHORITY_HOST", "https://login.microsoftonline.com")
auth.graph_api_url = optional("AML_GRAPH_URL", "https://graph.microsoft.com")
auth.ca_certs = ca_bundle
with open(required("AML_GROUP_NAMES_FILE")) as f:
    auth.group_names = json.load(f)
auth.allowed_groups = names("AML_ALLOWED_GROUPS", "data-scientists")
auth.admin_groups = names("AML_ADMIN_GROUPS", "jupyterhub-admins")
c.Authenticator.refresh_pre_spawn = True  # a fresh ARM token before every spawn
configure_token_broker(c)

# -- servers: each user's compute instance, created and started as them ------------------
c.JupyterHub.spawner_class = "aml"
c.AMLSpawner.arm_url = optional("AML_ARM_URL", "https://management.azure.com")
c.AMLSpawner.ca_bundle = ca_bundle
c.AMLSpawner.hub_id = optional("AML_HUB_ID", "jupyterhub")
c.AMLSpawner.workspaces = workspace_from_env()  # AML_WORKSPACE_*
c.AMLSpawner.profiles = [
    {"key": "small", "display_name": "Small CPU (4 cores, 14 GB)", "workspace": "main",
     "vm_size": "Standard_DS3_v2", "idle_shutdown_minutes": 60, "default": True},
    {"key": "memory", "display_name": "Memory optimised (4 cores, 32 GB)", "workspace": "main",
     "vm_size": "Standard_E4ds_v4", "idle_shutdown_minutes": 30},
    # {"key": "gpu", "display_name": "GPU (NC6s v3)", "workspace": "main", "vm_size": "Standard_NC6s_v3",
    #  "idle_shutdown_minutes": 30, "groups": ["gpu-users"]},
]
c.AMLSpawner.instance_hub_url = optional("AML_INSTANCE_HUB_URL", f"{public_url}/hub/api")
# The instance's startup agent is aml-jupyterhub itself, with its pinned rclone (the [instance] extra) and
# Debian's fuse3 for the user space's FUSE mount: install them unless your image has them (no secrets here).
# c.AMLSpawner.instance_setup_command = (
#     "apt-get install -y -q fuse3 && pip install 'aml-jupyterhub[instance]==<the hub's version>'"
# )

# -- the user space: one private Azure File Share per user ------------------------------
c.UserSpace.account_url = required("AML_USERSPACE_ACCOUNT_URL")
c.UserSpace.account_key = required("AML_USERSPACE_ACCOUNT_KEY")
c.UserSpace.quota_gib = int(optional("AML_USERSPACE_QUOTA_GIB", "100"))
c.UserSpace.ca_bundle = ca_bundle

# -- Spark kernels (sparkmagic) on Apache Livy or Microsoft Fabric -----------------------
if optional("AML_SPARK_BACKEND"):
    c.AMLSpawner.spark = {
        "backend": required("AML_SPARK_BACKEND"),  # "apache" (Livy URL) or "fabric" (the lakehouse's Livy endpoint)
        "endpoint": required("AML_SPARK_ENDPOINT"),
        "timeout_seconds": 600,
        "session_name_prefix": "jh",
        "spark_conf": {"spark.executor.memory": "4g"},
    }
