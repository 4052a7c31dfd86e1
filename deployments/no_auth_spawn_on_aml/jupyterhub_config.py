"""Try AMLSpawner without Entra sign-in: dummy login, a service principal creates the instances.

What it is for: evaluating the spawner on a workstation or a test VM before
setting up delegated sign-in. **Anyone who can reach the hub can sign in as
any mapped user with any password** (JupyterHub's DummyAuthenticator), so
keep it bound to 127.0.0.1 (the default) or behind something that
authenticates. For production use `azure_ad_auth_spawn_on_aml/`.

How it acts on Azure: the hub's service principal (``AML_SP_*``) creates,
starts and stops every compute instance, and assigns each one to its user's
Entra identity, looked up in an admin-written owner map::

    {"alice": {"oid": "<Alice's Entra object id>", "tenant_id": "<tenant id>"},
     "bob":   {"oid": "...", "tenant_id": "..."}}

Only users in the map may sign in. The service principal needs a role on the
workspace that may create instances on behalf of others (Contributor, or the
custom role in docs/rbac.md).

What to set (environment; see deployments/env.template):

- AML_SP_TENANT_ID, AML_SP_CLIENT_ID, AML_SP_CLIENT_SECRET: the service principal
- AML_OWNERS_FILE: path of the owner map (JSON, above)
- AML_WORKSPACE_SUBSCRIPTION_ID, AML_WORKSPACE_RESOURCE_GROUP, AML_WORKSPACE_NAME,
  AML_WORKSPACE_LOCATION: the Azure ML workspace instances are created in
- optional: AML_HUB_BIND_URL (default http://127.0.0.1:8000), AML_HUB_ID,
  AML_ADMIN_USERS, AML_ARM_URL, AML_SP_AUTHORITY_HOST, AML_CA_BUNDLE

Edit the profiles below (VM sizes, idle shutdown) to suit the workspace.
Run: ``jupyterhub -f deployments/no_auth_spawn_on_aml/jupyterhub_config.py``.
"""


from aml_jupyterhub.spawner.service_principal import arm_credential_from_env, load_owner_map, owners_from_map

c = get_config()  # noqa: F821 (provided by JupyterHub)


from aml_jupyterhub.settings_env import optional, required, workspace_from_env  # noqa: E402


c.JupyterHub.bind_url = optional("AML_HUB_BIND_URL", "http://127.0.0.1:8000")

# -- sign-in: anyone in the owner map, any password --------------------------------
owners = load_owner_map(required("AML_OWNERS_FILE"))
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = set(owners)
c.Authenticator.admin_users = {u.strip() for u in optional("AML_ADMIN_USERS", "").split(",") if u.strip()}

# -- servers: compute instances created by the hub's service principal ------------------------
c.JupyterHub.spawner_class = "aml"
c.JupyterHub.cleanup_servers = False  # instances outlive the hub process; a restart reconnects
# AML_SP_TENANT_ID, AML_SP_CLIENT_ID, AML_SP_CLIENT_SECRET; TLS trusts AML_CA_BUNDLE when set.
c.AMLSpawner.arm_credential = arm_credential_from_env(ca_bundle=optional("AML_CA_BUNDLE"))
c.AMLSpawner.owner = owners_from_map(owners)
c.AMLSpawner.arm_url = optional("AML_ARM_URL", "https://management.azure.com")
c.AMLSpawner.ca_bundle = optional("AML_CA_BUNDLE")
c.AMLSpawner.hub_id = optional("AML_HUB_ID", "jupyterhub")
c.AMLSpawner.workspaces = workspace_from_env()  # AML_WORKSPACE_*
c.AMLSpawner.profiles = [
    {"key": "small", "display_name": "Small CPU (4 cores, 14 GB)", "workspace": "main",
     "vm_size": "Standard_DS3_v2", "idle_shutdown_minutes": 60, "default": True},
    {"key": "memory", "display_name": "Memory optimised (4 cores, 32 GB)", "workspace": "main",
     "vm_size": "Standard_E4ds_v4", "idle_shutdown_minutes": 30},
]
