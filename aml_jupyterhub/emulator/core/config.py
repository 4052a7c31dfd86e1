"""What the emulated Azure looks like: tenants, users, groups, apps, workspaces, storage.

Everything is plain data so a test can build a config in a few lines and the
command line can load one from JSON (``--config file.json``). Identifiers of
the default demo directory are stable (uuid5), so a persisted emulator and a
hub's database agree across restarts.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

_NS = uuid.UUID("5b6d7a4e-9c1f-4b7e-8a35-0f3c2d9e1a77")


def stable_id(*parts: str) -> str:
    """A GUID derived from ``parts``: the same name always gets the same id."""
    return str(uuid.uuid5(_NS, "/".join(parts)))


def stable_key(*parts: str) -> str:
    """A base64 storage-account key derived from ``parts`` (64 bytes, like Azure's)."""
    digest = hashlib.sha512("/".join(parts).encode()).digest()
    return base64.b64encode(digest).decode()


@dataclass
class Tenant:
    id: str
    domain: str  # e.g. contoso.example
    display_name: str = ""


@dataclass
class Group:
    id: str
    display_name: str
    # False: a distribution (mail-only) group; Graph's securityEnabledOnly filters these out.
    security_enabled: bool = True


@dataclass
class User:
    username: str  # the UPN, e.g. alice@contoso.example
    display_name: str
    tenant_id: str
    oid: str
    password: str = "password"
    groups: list[str] = field(default_factory=list)  # group object ids
    mail: str | None = None
    # Conditional Access demands MFA: refresh tokens and ROPC from sessions
    # without MFA get AADSTS50076 interaction_required.
    mfa_required: bool = False


@dataclass
class App:
    """An app registration (and its service principal) in one tenant."""

    client_id: str
    tenant_id: str
    display_name: str = "app"
    client_secret: str | None = None  # None: a public client
    redirect_uris: list[str] = field(default_factory=list)  # empty: any loopback URI
    service_principal_oid: str = ""
    # Resources every user has consented to for this app ("*" = all known
    # resources). Missing consent -> AADSTS65001 consent_required on refresh.
    consented_resources: list[str] = field(default_factory=lambda: ["*"])
    # Emit the "groups" claim (like groupMembershipClaims=SecurityGroup).
    group_claims: bool = True
    # Application permissions granted to the service principal, by resource.
    app_roles: dict[str, list[str]] = field(default_factory=dict)
    # Optional claims the registration adds to access tokens issued FOR it (as a resource), e.g. "idtyp".
    # Entra sends idtyp only when asked (docs/emulator-fidelity.md).
    optional_claims: list[str] = field(default_factory=list)


@dataclass
class Workspace:
    subscription_id: str
    resource_group: str
    name: str
    location: str
    # principal oid -> built-in role name (see arm RBAC table)
    role_assignments: dict[str, str] = field(default_factory=dict)

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )


@dataclass
class StorageAccount:
    name: str
    key: str
    # principal oid -> role name; keys "<oid>" (whole account) or "<oid>/<share>".
    role_assignments: dict[str, str] = field(default_factory=dict)


@dataclass
class VmSize:
    name: str
    family: str
    cores: int


@dataclass
class Timings:
    """Seconds each compute-instance transition takes in the emulator."""

    create: float = 3.0
    setup: float = 1.0
    start: float = 2.0
    stop: float = 2.0
    restart: float = 2.0
    delete: float = 1.0
    # Retry-After (s) on long-running-operation replies; None leaves it out.
    lro_retry_after: int | None = 1


@dataclass
class Throttle:
    """ARM token buckets, per principal + subscription + region (Azure 2024+ model)."""

    read_burst: int = 250
    read_rate: float = 25.0
    write_burst: int = 200
    write_rate: float = 10.0


@dataclass
class EmulatorConfig:
    tenants: list[Tenant] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    users: list[User] = field(default_factory=list)
    apps: list[App] = field(default_factory=list)
    workspaces: list[Workspace] = field(default_factory=list)
    storage_accounts: list[StorageAccount] = field(default_factory=list)
    vm_sizes: list[VmSize] = field(default_factory=list)
    # "<subscription>/<location>/<family>" -> vCPU quota
    core_quotas: dict[str, int] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    throttle: Throttle = field(default_factory=Throttle)
    access_token_lifetime: int = 3600
    refresh_token_lifetime: int = 90 * 24 * 3600
    # Tokens carry at most this many groups; beyond it the overage claim (JWT: 200).
    group_claim_limit: int = 200
    # Refuse a refresh token once it was redeemed (catches clients that keep
    # stale tokens; real Entra tolerates replays for a while).
    strict_refresh_rotation: bool = True

    # -- lookups -----------------------------------------------------------
    def tenant(self, tenant_id_or_domain: str) -> Tenant | None:
        key = tenant_id_or_domain.lower()
        for t in self.tenants:
            if key in (t.id.lower(), t.domain.lower()):
                return t
        return None

    def user(self, username_or_oid: str) -> User | None:
        key = username_or_oid.lower()
        for u in self.users:
            if key in (u.username.lower(), u.oid.lower()):
                return u
        return None

    def app(self, client_id: str) -> App | None:
        return next((a for a in self.apps if a.client_id == client_id), None)

    def group(self, group_id: str) -> Group | None:
        return next((g for g in self.groups if g.id == group_id), None)

    def workspace(self, subscription: str, resource_group: str, name: str) -> Workspace | None:
        for w in self.workspaces:
            if (
                w.subscription_id.lower() == subscription.lower()
                and w.resource_group.lower() == resource_group.lower()
                and w.name.lower() == name.lower()
            ):
                return w
        return None

    def storage_account(self, name: str) -> StorageAccount | None:
        return next((s for s in self.storage_accounts if s.name == name), None)

    def vm_size(self, name: str) -> VmSize | None:
        return next((v for v in self.vm_sizes if v.name.lower() == name.lower()), None)

    # -- (de)serialisation -----------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmulatorConfig:
        nested = {
            "tenants": Tenant,
            "groups": Group,
            "users": User,
            "apps": App,
            "workspaces": Workspace,
            "storage_accounts": StorageAccount,
            "vm_sizes": VmSize,
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in nested:
                kwargs[key] = [nested[key](**item) for item in value]
            elif key == "timings":
                kwargs[key] = Timings(**value)
            elif key == "throttle":
                kwargs[key] = Throttle(**value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


DEMO_CLIENT_ID = stable_id("app", "aml-jupyterhub")
DEMO_CLIENT_SECRET = "demo-client-secret-not-for-production"
DEMO_SUBSCRIPTION = stable_id("subscription", "demo")
# The Azure ML gateway in front of every compute instance signs the browser in as this public client.
GATEWAY_CLIENT_ID = stable_id("app", "azure-ml-gateway")


def default_config() -> EmulatorConfig:
    """The demo directory: one tenant, a few users and groups, two workspaces."""
    tenant = Tenant(id=stable_id("tenant", "contoso"), domain="contoso.example", display_name="Contoso")
    groups = [
        Group(stable_id("group", name), name)
        for name in ("jupyterhub-admins", "data-scientists", "spark-users", "finance")
    ]
    gid = {g.display_name: g.id for g in groups}

    def user(name: str, display: str, *group_names: str) -> User:
        return User(
            username=f"{name}@{tenant.domain}",
            display_name=display,
            tenant_id=tenant.id,
            oid=stable_id("user", tenant.id, name),
            groups=[gid[g] for g in group_names],
            mail=f"{name}@{tenant.domain}",
        )

    users = [
        user("alice", "Alice Archer", "data-scientists", "spark-users"),
        user("bob", "Bob Baker", "data-scientists"),
        user("carol", "Carol Admin", "jupyterhub-admins", "data-scientists"),
        user("eve", "Eve Outsider", "finance"),
    ]
    app = App(
        client_id=DEMO_CLIENT_ID,
        tenant_id=tenant.id,
        display_name="aml-jupyterhub",
        client_secret=DEMO_CLIENT_SECRET,
        service_principal_oid=stable_id("sp", DEMO_CLIENT_ID),
        # No optional claims: the hub relies only on claims every token carries (docs/token-broker.md),
        # so the whole suite runs without idtyp, as a hub app registered per docs/app-registration.md.
    )
    gateway = App(client_id=GATEWAY_CLIENT_ID, tenant_id=tenant.id, display_name="Azure Machine Learning", group_claims=False)
    # Users may manage their own compute instances; carol (admin) may manage anyone's; eve has no role.
    roles = {u.oid: "AzureML Compute Operator" for u in users if u.username.split("@")[0] in ("alice", "bob")}
    roles[users[2].oid] = "Contributor"
    roles[app.service_principal_oid] = "Contributor"
    workspaces = [
        Workspace(DEMO_SUBSCRIPTION, "rg-ml", "ws-research", "eastus", dict(roles)),
        Workspace(DEMO_SUBSCRIPTION, "rg-ml", "ws-analytics", "eastus", dict(roles)),
    ]
    storage = StorageAccount(
        name="userfilesdemo",
        key=stable_key("storage", "userfilesdemo"),
        role_assignments={app.service_principal_oid: "Storage File Data Privileged Contributor"},
    )
    vm_sizes = [
        VmSize("Standard_DS3_v2", "standardDSv2Family", 4),
        VmSize("Standard_DS11_v2", "standardDSv2Family", 2),
        VmSize("Standard_E4ds_v4", "standardEDv4Family", 4),
        VmSize("Standard_NC6s_v3", "standardNCSv3Family", 6),
    ]
    return EmulatorConfig(
        tenants=[tenant],
        groups=groups,
        users=users,
        apps=[app, gateway],
        workspaces=workspaces,
        storage_accounts=[storage],
        vm_sizes=vm_sizes,
        # Stopped instances keep their cores (as in Azure), and a test session's emulator keeps every
        # instance its tests made: room for a few hundred of them.
        core_quotas={
            f"{DEMO_SUBSCRIPTION}/eastus/standardDSv2Family": 2000,
            f"{DEMO_SUBSCRIPTION}/eastus/standardEDv4Family": 2000,
            f"{DEMO_SUBSCRIPTION}/eastus/standardNCSv3Family": 0,
        },
    )
