"""no_auth_spawn_on_aml plus each user's private file share on their compute instance.

What it is for: trying the user space (one Azure File Share per user,
mounted at ``~/userfiles`` on every instance the user starts) without Entra
sign-in. Everything in ``../no_auth_spawn_on_aml/jupyterhub_config.py`` applies
(dummy login: keep the hub on 127.0.0.1), and it is loaded first.

The user space is configured on ``aml_jupyterhub.userspace.UserSpace``
(docs/user-space.md). Without Entra sign-in, ``configure_instance_api`` serves
the API instances use to fetch their mount credential
(``/hub/api/aml/instance-token``, ``instance-config``): instances prove who
they are with their managed identity, for the service principal's app
(``AML_SP_CLIENT_ID``) as the hub's app.

What to set (environment; see deployments/env.template), besides the
no_auth_spawn_on_aml variables:

- AML_USERSPACE_ACCOUNT_URL: https://<account>.file.core.windows.net
- AML_USERSPACE_ACCOUNT_KEY: the storage account key; held by the hub only,
  to create shares and sign share-scoped SAS (never sent to an instance)
- AML_INSTANCE_HUB_URL: the hub's API URL as compute instances reach it
  (https://<hub>/hub/api; reachable from the workspace's network)
- optional: AML_USERSPACE_QUOTA_GIB (default 100), AML_USERSPACE_MOUNT_PATH
  (default ~/userfiles)
"""

from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub)


from aml_jupyterhub.settings_env import optional, required  # noqa: E402


load_subconfig(str(Path(__file__).resolve().parent.parent / "no_auth_spawn_on_aml" / "jupyterhub_config.py"))  # noqa: F821

# -- the user space: one private Azure File Share per user ------------------------------
c.UserSpace.account_url = required("AML_USERSPACE_ACCOUNT_URL")
c.UserSpace.account_key = required("AML_USERSPACE_ACCOUNT_KEY")
c.UserSpace.quota_gib = int(optional("AML_USERSPACE_QUOTA_GIB", "100"))
c.UserSpace.mount_path = optional("AML_USERSPACE_MOUNT_PATH", "~/userfiles")
c.UserSpace.ca_bundle = optional("AML_CA_BUNDLE")  # empty: the system's CA store
c.AMLSpawner.instance_hub_url = required("AML_INSTANCE_HUB_URL")

from aml_jupyterhub.auth.instance_handlers import configure_instance_api  # noqa: E402

configure_instance_api(
    c,
    tenant_id=required("AML_SP_TENANT_ID"),
    client_id=required("AML_SP_CLIENT_ID"),
    authority_host=optional("AML_SP_AUTHORITY_HOST", "https://login.microsoftonline.com"),
    ca_certs=optional("AML_CA_BUNDLE") or None,
)
