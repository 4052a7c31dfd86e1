"""``AMLSpawner``: each user's own Azure ML compute instance, created and started as that user."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import jinja2
from jupyterhub import orm
from jupyterhub.spawner import Spawner
from jupyterhub.user import User as HubUser
from jupyterhub.utils import url_path_join
from sqlalchemy.orm import object_session
from tornado import web
from traitlets import Bool, Callable, Dict, Float, Integer, List, Unicode, Union, default

from ..auth.instance_tokens import revoke_instance_tokens
from ..userspace import (
    UserSpace,
    UserSpaceError,
    ensure_share,
    grant,
    policy_id,
    renewal_due,
    revoke,
    share_access,
    share_name,
)
from . import cleanup, errors
from .azure_calls import ArmEndpoint, ComputeClient, NameTaken
from .connection import Redirector
from .culler import IdleCuller
from .identity import InstanceRecord, replaced, token_mismatch
from .plan import Step, plan_start
from .profiles import Choice, Profile, ProfileError, Workspace, choose, options_from_form, parse_profiles, parse_workspaces
from .reconcile import Reconciler
from .reflector import WorkspaceReflector
from .slugs import compute_instance_name
from .snapshots import ComputeSnapshot
from .specs import TAG_CREATE, TAG_SERVER, Owner, compute_instance_body, compute_instance_spec, owned_by, ownership_tags
from .startup import InlineScript, startup_script
from .states import Phase

STATE_VERSION = 1
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent.parent / "templates"), autoescape=True
)


def delegated_arm_credential(spawner: AMLSpawner, user: Any) -> Any:
    """Default: ``user``'s own delegated ARM token (needs the azuread-delegated authenticator)."""
    tokens = getattr(spawner.authenticator, "tokens", None)
    if tokens is None:
        raise errors.SignInExpired("the authenticator keeps no delegated tokens")
    return tokens.credential(user, "arm")


async def owner_from_auth_state(spawner: AMLSpawner) -> Owner:
    """Default: the Entra object id and tenant from the validated id_token in auth_state."""
    auth_state = await spawner.user.get_auth_state() or {}
    claims = auth_state.get("user") or {}
    if not claims.get("oid") or not claims.get("tid"):
        raise errors.SignInExpired("no Entra identity in auth_state")
    return Owner(spawner.user.name, claims["oid"], claims["tid"])


class AMLSpawner(Spawner):
    """Start each user's personal Azure ML compute instance, as them, and send their browser to it."""

    # -- configuration ----------------------------------------------------------------
    workspaces = Dict(
        config=True,
        help="""Azure ML workspaces servers may run in, by key::

            {"research": {"subscription_id": "...", "resource_group": "rg-ml",
                          "workspace_name": "ws-research", "location": "eastus",
                          "display_name": "Research"}}
        """,
    )
    profiles = Union(
        [List(Dict()), Callable()],
        default_value=[],
        config=True,
        help="""Compute profiles users choose from (a list of dicts, or a callable/async
        callable taking the spawner). Keys: key, display_name, workspace (a key of
        `workspaces`), vm_size, description, idle_shutdown_minutes (15..4320),
        groups (JupyterHub groups that may use it; empty: all), default, schedules,
        spark, cost_per_hour (optional: the approximate price of an hour of the VM in
        `cost_currency`, shown on the form; look it up for your region and agreement).""",
    )
    arm_url = Unicode("https://management.azure.com", config=True, help="Azure Resource Manager endpoint.")
    ca_bundle = Unicode("", config=True, help="CA bundle for ARM (the local emulator's); empty: the system's.")
    hub_id = Unicode(
        "jupyterhub",
        config=True,
        help="Identifies this hub in compute names and tags; give each hub sharing a workspace its own.",
    )
    compute_name_prefix = Unicode("jh", config=True, help="First letters of every compute-instance name.")
    arm_credential = Callable(
        default_value=delegated_arm_credential,
        config=True,
        help="""callable(spawner, user) -> azure-core AsyncTokenCredential for ARM calls about ``user``'s
        instances. Default: that user's own delegated token. A service principal is possible but then
        the hub, not the user, acts.""",
    )
    owner = Callable(
        default_value=owner_from_auth_state,
        config=True,
        help="async callable(spawner) -> Owner(username, oid, tenant_id): whom the instance is assigned to.",
    )
    poll_interval_seconds = Float(15.0, config=True, help="How often each workspace's computes are listed (shared by all users).")
    fast_poll_interval_seconds = Float(
        0.5,
        config=True,
        help="""How often a workspace's computes are listed while any spawn, stop or clean-up in it waits for a
        change (one list serves every waiter); then back to poll_interval_seconds. See docs/performance.md for
        the ARM read arithmetic against Azure's throttling limits.""",
    )
    fast_poll_pages_per_second = Float(
        10.0,
        config=True,
        help="""While listing fast, read at most this many list pages a second: a workspace whose list has many
        pages (100 instances each) is listed less often than fast_poll_interval_seconds, so the listing
        identity stays well inside ARM's per-principal read refill (25 a second).""",
    )
    azure_timeout_seconds = Float(60.0, config=True, help="Timeout of each Azure call.")
    cleanup_window_seconds = Float(
        60.0,
        config=True,
        help="""After a create, start or stop whose answer timed out, how long the spawner watches for what the
        request may still have done (an instance it created is deleted; a started one is stopped).""",
    )
    stop_wait_seconds = Float(300.0, config=True, help="How long stop() waits for Stopped before returning anyway.")
    patience_seconds = Float(60.0, config=True, help="After this long without a state change, tell the user it is still on its way.")
    form_wait_seconds = Float(
        3.0, config=True, help="How long the options form waits for a first list of the user's instances (after a hub restart)."
    )
    cost_currency = Unicode(
        "USD", config=True, help="Currency of the profiles' `cost_per_hour`, shown beside it on the options form."
    )
    redirect_port = Integer(0, config=True, help="Port of the hub-wide redirect server on 127.0.0.1 (0: any free port).")
    instance_hub_url = Unicode(
        "",
        config=True,
        help="""The hub's API URL as compute instances reach it (e.g. https://hub.example.org/hub/api): their
        startup script trades the instance's managed identity for a short-lived hub token there and fetches
        the user space and Spark settings. Empty: the hub's own API URL (right when instances can reach it,
        as with the local emulator). Written into new instances only.""",
    )
    instance_setup_command = Unicode(
        "",
        config=True,
        help="""Shell run first by every instance's startup script, e.g. to install aml-jupyterhub on the
        instance (`pip install 'aml-jupyterhub[instance]'`: the agent and its pinned rclone). Runs as root; must contain no secret (the workspace's
        members can read the instance's configuration).""",
    )
    instance_audience = Unicode(
        "",
        config=True,
        help="""The hub's Entra app as instances ask their managed identity for it (api://<client id>).
        Empty: the azuread-delegated authenticator's client id. Set by configure_instance_api().""",
    )
    instance_python = Unicode("python3", config=True, help="The Python on the instance that runs the aml-jupyterhub agent.")
    spark = Dict(
        config=True,
        help="""Spark kernel settings for every instance (see docs/spark.md): backend (apache|fabric), endpoint,
        timeout_seconds, session_name_prefix, spark_conf, py_files, ... A profile's own `spark` dict is merged
        over this. Empty: no Spark kernels are configured.""",
    )
    instance_settings = Dict(
        config=True,
        help="""Non-secret settings for the user's code on every instance (e.g. {"DATABRICKS_HOST": "https://adb-....azuredatabricks.net"}),
        written to ~/.aml-jupyterhub/settings.json on each start; read them with aml_jupyterhub.instance.settings().""",
    )
    reconcile_interval_seconds = Float(
        300.0,
        config=True,
        help="How often to stop instances this hub created that no server owns (0: never). They are stopped, not deleted.",
    )

    idle_culler = Bool(
        True,
        config=True,
        help="""Stop servers whose instance reported no Jupyter activity for their profile's idle_shutdown_minutes
        (hub-enforced idle shutdown: Azure's own does not apply to instances whose managed identity has no role,
        see docs/token-broker.md). No reports count as idle. Off: only Azure's idle shutdown (if it applies).""",
    )
    idle_cull_interval_seconds = Float(60.0, config=True, help="How often the idle culler looks at every server.")
    idle_cull_after_seconds = Float(
        0.0,
        config=True,
        help="Idle limit in seconds for every server, overriding profiles' idle_shutdown_minutes (0: the profile's).",
    )
    activity_interval_seconds = Float(
        60.0, config=True, help="How often each instance reports its Jupyter activity to the hub (seconds)."
    )

    @default("poll_interval")
    def _poll_interval_default(self) -> int:
        """Notice a stopped instance within one compute list (JupyterHub's default is 30 s)."""
        return max(1, round(self.poll_interval_seconds))

    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return 20 * 60  # Azure creates an instance in ~5 minutes; setup scripts add more

    @default("http_timeout")
    def _http_timeout_default(self) -> int:
        return 60

    @default("apply_user_options")
    def _apply_user_options_default(self):
        return AMLSpawner._validate_user_options

    @default("options_form")
    def _options_form_default(self):
        return AMLSpawner._render_options_form

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.compute_name: str | None = None
        self.workspace_key: str | None = None
        self.profile_key: str | None = None
        self.jupyter_url: str | None = None
        self.compute_id: str | None = None  # the instance's ARM id: how the hub recognises its managed identity
        self.share: str | None = None  # the user space's share
        self.policy_expires_on: float | None = None  # when this server's stored access policy on it ends
        self.vm_size: str | None = None  # shown in the admin panel (server state)
        self.instance_state: str | None = None  # Azure's state, as of the last poll (admin panel)
        self.idle_minutes: int | None = None  # the profile's idle shutdown, enforced by the idle culler
        # What this hub saw of each instance it created, by name; kept when the server stops, so a
        # same-name instance re-created outside the hub is never started or trusted (identity.py).
        self.instances: dict[str, InstanceRecord] = {}
        self._record_changed = asyncio.Event()
        self._choice: Choice | None = None
        self._events: list[dict[str, Any]] = []
        self._events_changed = asyncio.Event()
        self._started_at = 0.0

    # -- the life cycle ---------------------------------------------------------------------
    async def start(self) -> str:
        self._events, self._started_at = [], time.monotonic()
        choice = self._choice or await self._choose(self.user_options or {})
        workspace = self._workspaces()[choice.profile.workspace]
        owner = await self.owner(self)
        self.compute_name = compute_instance_name(
            self.compute_name_prefix, self.user.name, owner.oid, self.name, choice.profile.key, self.hub_id
        )
        self.workspace_key, self.profile_key = workspace.key, choice.profile.key
        self.vm_size, self.idle_minutes = choice.profile.vm_size, choice.profile.idle_shutdown_minutes
        self.compute_id = f"{workspace.arm_id}/computes/{self.compute_name}"
        self._persist_state()  # from here a hub restart resumes this spawn instead of orphaning it
        cleanup.cancel(self._cleanup_key(workspace))  # this start takes over whatever an earlier attempt left
        self._spark_config(choice.profile)  # invalid Spark settings fail here, not in the instance's startup
        reflector = self._reflector(workspace)
        # The share and the instance's state at once; the instance is touched only once both are known,
        # so a storage outage changes nothing.
        current = await self._read_while(workspace, self._prepare_user_space(owner))
        step = plan_start(current, owner, choice.recreate)
        self._emit(5, self._describe(step, current))
        created = await self._carry_out(step, workspace, choice.profile, owner, reflector)
        self._check_or_record(reflector.get(self.compute_name), created)
        snapshot = await self._wait_until_running(reflector)
        return self._connect(snapshot)

    async def stop(self, now: bool = False) -> None:
        if not self.compute_name or not self.workspace_key:
            return
        self._revoke_instance_tokens()  # before anything that may fail: the instance is trusted no more
        await self._revoke_policy()  # the mount's credential dies now, whatever the instance does
        workspace = self._workspaces()[self.workspace_key]
        reflector = self._reflector(workspace)
        Redirector.shared().remove(self.server.base_url if self.server else "")
        current = await self._read(workspace)
        if current is not None and current.state in cleanup.RUNNING:
            try:
                await self._client(workspace).stop(self.compute_name)
            except errors.TimedOut:
                self._stop_when_running(workspace, "stop timed out")
                return
            reflector.poke()
        elif current is not None and current.state in cleanup.STARTING:
            # Cancelled or timed out mid-start: Azure only stops a Running instance, so stop it once it is.
            self._stop_when_running(workspace, "start was cancelled")
            return
        if not now:
            try:
                await reflector.wait_for(self.compute_name, _at_rest, self.stop_wait_seconds)
            except asyncio.TimeoutError:
                self.log.warning("%s still stopping after %ss; leaving it to Azure", self.compute_name, self.stop_wait_seconds)

    async def poll(self) -> int | None:
        if not self.compute_name or not self.workspace_key:
            return 0
        reflector = self._reflector(self._workspaces()[self.workspace_key])
        if not reflector.synced_at:
            return None  # no list yet (hub just started): assume running, decide on the next poll
        snapshot = reflector.get(self.compute_name)
        self._show(snapshot)
        if snapshot is None:
            return 0
        record = self.instances.get(self.compute_name)
        why = replaced(record, snapshot) if record else None
        if why:
            self.log.warning("[%s] %s: %s; ending the server", self._log_name, self.compute_name, why)
            return 1
        if snapshot.phase is Phase.RUNNING or snapshot.state in cleanup.STARTING:
            await self._keep_policy()
            return None
        return 1 if snapshot.phase is Phase.FAILED else 0

    async def get_url(self) -> str:
        """After a hub restart: wait for an instance that was still starting, then give its route."""
        if not self.compute_name or not self.workspace_key:
            return await super().get_url()
        snapshot = await self._wait_until_running(self._reflector(self._workspaces()[self.workspace_key]))
        return self._connect(snapshot)

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        sent = 0
        while True:
            for event in self._events[sent:]:
                yield event
            sent = len(self._events)
            if self._events and self._events[-1].get("ready"):
                return
            self._events_changed.clear()
            await self._events_changed.wait()

    def _cleanup_key(self, workspace: Workspace) -> tuple[str, str]:
        return (workspace.arm_id.lower(), self.compute_name or "")

    def _stop_when_running(self, workspace: Workspace, what: str) -> None:
        """In the background: stop this server's instance once it is Running (see cleanup.py)."""
        assert self.compute_name is not None
        job = cleanup.stop_when_running(
            self._client(workspace), self._reflector(workspace), self.compute_name, self.cleanup_window_seconds, self.start_timeout
        )
        cleanup.in_background(self._cleanup_key(workspace), job, what, self.log)

    # -- state that survives the hub ------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.compute_name:
            state.update(
                v=STATE_VERSION,
                compute_name=self.compute_name,
                workspace=self.workspace_key,
                profile=self.profile_key,
                jupyter_url=self.jupyter_url,
                compute_id=self.compute_id,
                share=self.share,
                policy_expires_on=self.policy_expires_on,
                vm_size=self.vm_size,
                instance_state=self.instance_state,
                idle_minutes=self.idle_minutes,
            )
        if self.instances:
            state.update(v=STATE_VERSION, instances={name: r.as_json() for name, r in self.instances.items()})
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if state.get("v") == STATE_VERSION:
            self.compute_name = state.get("compute_name")
            self.workspace_key = state.get("workspace")
            self.profile_key = state.get("profile")
            self.jupyter_url = state.get("jupyter_url")
            self.compute_id = state.get("compute_id")
            self.share = state.get("share")
            self.policy_expires_on = state.get("policy_expires_on")
            self.vm_size = state.get("vm_size")
            self.instance_state = state.get("instance_state")
            self.idle_minutes = state.get("idle_minutes")
            self.instances = {n: InstanceRecord.from_json(n, r) for n, r in (state.get("instances") or {}).items()}

    def clear_state(self) -> None:
        """Forget the instance of a stopped server (it stays in Azure, stopped, for reuse) and revoke its tokens.

        JupyterHub calls this however the server ended (stopped, or found stopped or gone by ``poll``).
        The record of what this hub created (``instances``) is kept.
        """
        super().clear_state()
        self._revoke_instance_tokens()
        self.compute_name = self.workspace_key = self.profile_key = self.jupyter_url = self.compute_id = self.share = None
        self.policy_expires_on = None
        self.vm_size = self.instance_state = self.idle_minutes = None
        self._events = []

    # -- the instance's identity (docs/token-broker.md) ------------------------------------------------
    def idle_limit_seconds(self) -> float:
        """After how long without activity the idle culler stops this server (0: never)."""
        if not self.idle_culler or not self.compute_name:
            return 0.0
        return self.idle_cull_after_seconds or 60.0 * (self.idle_minutes or 0)

    def _revoke_instance_tokens(self) -> None:
        if self.compute_name and self.orm_spawner is not None:
            revoked = revoke_instance_tokens(self._db(), self.user.orm_user, self.compute_name)
            if revoked:
                self.log.info("[%s] revoked %d hub token(s) of instance %s", self._log_name, revoked, self.compute_name)

    def _check_or_record(self, snapshot: ComputeSnapshot | None, created: bool) -> None:
        """Record an instance this spawn created; refuse one that is not what this hub created."""
        name = self.compute_name
        assert name is not None
        record = self.instances.get(name)
        if created or record is None:
            if not created and snapshot is not None:
                self.log.warning("[%s] %s: no record of its identity (created before this hub kept one); recording it now", self._log_name, name)
            self._record(InstanceRecord.of(snapshot) if snapshot is not None else InstanceRecord(name))
        elif why := replaced(record, snapshot):
            self.log.warning("[%s] %s: %s; refusing to use it", self._log_name, name, why)
            raise errors.InstanceReplaced(name, why)

    def _record(self, record: InstanceRecord) -> None:
        if self.instances.get(record.name) != record:
            self.instances[record.name] = record
            self._persist_state()
            self._record_changed.set()

    def _show(self, snapshot: ComputeSnapshot | None) -> None:
        """Keep the instance's Azure state and size in the server's state (the admin panel shows it)."""
        state, size = (snapshot.state, snapshot.vm_size) if snapshot else ("Deleted", self.vm_size)
        if (state, size) != (self.instance_state, self.vm_size):
            self.instance_state, self.vm_size = state, size
            if self.orm_spawner is not None:
                self._persist_state()

    async def instance_identity_refusal(self, claims: dict[str, Any], hub_tenant: str, wait: float = 30.0) -> str | None:
        """Why a validated managed-identity token is not this server's instance; None when it is.

        Waits (bounded) for the record of an instance still being created, then checks the token against
        it and reads the instance from ARM now (deleted or re-created since: refused).
        """
        name = self.compute_name
        if not name or not self.workspace_key:
            return "its server has no compute instance"
        deadline = time.monotonic() + wait
        while not (self.instances.get(name) and self.instances[name].complete) and time.monotonic() < deadline:
            self._record_changed.clear()
            try:
                await asyncio.wait_for(self._record_changed.wait(), deadline - time.monotonic())
            except asyncio.TimeoutError:
                break
        record = self.instances.get(name)
        why = token_mismatch(claims, record, self.compute_id or "", hub_tenant)
        if why or record is None:
            return why
        try:
            current = await self._read(self._workspaces()[self.workspace_key])
        except errors.ComputeError as e:
            return f"Azure could not confirm the instance now ({e})"
        return replaced(record, current)

    # -- the steps -------------------------------------------------------------------------------
    async def _carry_out(
        self, step: Step, workspace: Workspace, profile: Profile, owner: Owner, reflector: WorkspaceReflector
    ) -> bool:
        """One ARM write for the step (two for a recreate); True when it created a new instance. The
        reflector then watches the instance."""
        client, name = self._client(workspace), self.compute_name
        assert name is not None
        if step is Step.RECREATE:
            await client.delete(name)
            step = Step.CREATE_WHEN_GONE
        if step is Step.CREATE_WHEN_GONE:
            reflector.poke()
            await reflector.wait_for(name, lambda s: s is None, self.start_timeout)
            step = Step.CREATE
        if step is Step.START_WHEN_STOPPED:
            reflector.poke()
            await reflector.wait_for(name, lambda s: s is None or s.state == "Stopped", self.start_timeout)
            step = Step.START
        if step is Step.CREATE:
            await self._create(client, workspace, profile, owner, reflector)
        elif step is Step.START:
            try:
                await client.start(name)
            except errors.TimedOut:
                self._stop_when_running(workspace, "start timed out")
                raise
        reflector.poke()
        return step is Step.CREATE

    async def _create(
        self, client: ComputeClient, workspace: Workspace, profile: Profile, owner: Owner, reflector: WorkspaceReflector
    ) -> None:
        name = self.compute_name
        assert name is not None
        create_id = uuid.uuid4().hex  # tags what this request makes, so a timed-out create can be cleaned up
        tags = {**ownership_tags(self.hub_id, owner, self.name, profile), TAG_CREATE: create_id}
        script = InlineScript(
            startup_script(self._instance_hub_url(), self._hub_audience(), self.instance_setup_command, self.instance_python)
        )
        body = compute_instance_body(compute_instance_spec(name, profile, owner, tags, script), await client.location())
        try:
            created = await client.create(name, body)
        except errors.TimedOut:
            job = cleanup.delete_if_created(client, reflector, name, create_id, self.cleanup_window_seconds)
            cleanup.in_background(self._cleanup_key(workspace), job, "create timed out", self.log)
            raise
        except NameTaken:
            # Made meanwhile (e.g. a retried PUT whose first try got through): this server's only if plan_start says so.
            if plan_start(await self._read(workspace), owner, recreate=False) is not Step.WAIT:
                raise
            return
        if created is not None:
            await reflector.update(created, name)

    async def _wait_until_running(self, reflector: WorkspaceReflector) -> ComputeSnapshot:
        name = self.compute_name
        assert name is not None
        seen = reflector.get(name).state if reflector.get(name) else None
        while True:
            try:
                snapshot = await reflector.wait_for(name, lambda s: (s.state if s else None) != seen or _ready(s), self.patience_seconds)
            except asyncio.TimeoutError:
                self._emit(None, "Still waiting: Azure is taking its time, hang on (this can take several minutes).")
                continue
            if snapshot is None:
                raise errors.ComputeFailed(name, "gone", "it was deleted while starting")
            if name in self.instances:
                self._record(self.instances[name].completed_by(snapshot))
            if _ready(snapshot):
                self._emit(100, f"Your compute instance {name} is ready: opening JupyterLab.", ready=True)
                return snapshot
            if snapshot.phase is Phase.FAILED or snapshot.state == "Stopped" and seen not in (None, "Stopped"):
                raise errors.ComputeFailed(name, snapshot.state or "failed", "; ".join(snapshot.errors))
            seen = snapshot.state
            progress, words = _PROGRESS.get(seen or "", 50), _STATE_WORDS.get(seen or "", f"Azure reports your instance as {seen}.")
            if progress >= self._progress_so_far():  # the story only moves forward (the instance may have told us more)
                self._emit(progress, words)

    def _connect(self, snapshot: ComputeSnapshot) -> str:
        self.jupyter_url = snapshot.jupyter_url()
        self.instance_state, self.vm_size = snapshot.state, snapshot.vm_size or self.vm_size
        redirector = Redirector.shared(port=self.redirect_port)
        if self.server is not None and self.jupyter_url:
            redirector.add(self.server.base_url, self.jupyter_url)
            redirector.watch(self.server.base_url, self._not_serving, url_path_join(self.hub.base_url, "home"))
        return redirector.url

    async def _not_serving(self) -> str | None:
        """The instance's state if it does not serve Jupyter now (the redirect server asks before each redirect).

        A direct read as the user (a browser entering its server is rare: JupyterLab then runs on the
        instance's own origin); the last compute list if Azure does not answer. While the spawn itself
        is pending (JupyterHub checking that the server answers), the list that just saw it Running
        is used instead: that check costs no ARM request.
        """
        if not self.compute_name or not self.workspace_key:
            return "Stopped"
        workspace = self._workspaces()[self.workspace_key]
        reflector = self._reflector(workspace)
        if self.pending == "spawn" and time.monotonic() - reflector.synced_at <= max(2 * self.fast_poll_interval_seconds, 2.0):
            snapshot = reflector.get(self.compute_name)
        else:
            try:
                snapshot = await self._read(workspace)
            except errors.ComputeError:
                snapshot = reflector.get(self.compute_name)
        return None if _ready(snapshot) else (snapshot.state if snapshot else "Deleted")

    # -- what the instance sets up (asked by the instance through the hub's instance API) -----------
    async def instance_config(self) -> dict[str, Any]:
        """The user space's share with a SAS bound to this server's (extended) policy, and the Spark kernels' settings."""
        space = UserSpace(parent=self)
        if self._events and not self._events[-1].get("ready"):
            self._emit(80, "Mounting your files and setting up your Spark kernels on the instance.")
        access = None
        if space.enabled and self.share and self.compute_name:
            expiry = await self._grant_policy(space)
            access = share_access(space, self.share, policy_id(self.compute_name), expiry).as_json()
        return {
            "user": self.user.name,
            "server": self.name,
            "activity_interval": self.activity_interval_seconds,
            "hub_public_url": self.public_hub_url or "",  # JupyterLab's Hub menu (JupyterHub.public_url)
            "compute": self.compute_name,
            "userspace": access,
            "spark": self._spark_config(next((p for p in await self._profiles() if p.key == self.profile_key), None)),
            "settings": dict(self.instance_settings),
        }

    async def _prepare_user_space(self, owner: Owner) -> None:
        space = UserSpace(parent=self)
        if not space.enabled:
            return
        self.share = share_name(owner.username, owner.oid)
        self._emit(2, f"Preparing your private file share {self.share}.")
        created = await ensure_share(space, self.share, owner.oid)
        self.log.info("[%s] share %s %s", self._log_name, self.share, "created" if created else "exists")
        await self._grant_policy(space, persist=False)  # start() records its state once the instance is known

    # -- the mount's credential: one stored access policy per server (docs/user-space.md) ----------
    async def _grant_policy(self, space: UserSpace, persist: bool = True) -> dt.datetime:
        assert self.share and self.compute_name
        expiry = await grant(space, self.share, policy_id(self.compute_name))
        self.policy_expires_on = expiry.timestamp()
        if persist:
            self._persist_state()
        return expiry

    async def _keep_policy(self) -> None:
        """While the server runs: extend its policy once half of its lifetime has passed."""
        space = UserSpace(parent=self)
        if not (space.enabled and self.share) or not renewal_due(self.policy_expires_on, space, time.time()):
            return
        try:
            await self._grant_policy(space)
        except UserSpaceError as e:
            self.log.warning("[%s] could not extend the user space's policy: %s", self._log_name, e)

    async def _revoke_policy(self) -> None:
        space = UserSpace(parent=self)
        if not (space.enabled and self.share):
            return
        try:
            await revoke(space, self.share, policy_id(self.compute_name or ""))
            self.policy_expires_on = None
        except UserSpaceError as e:  # it still expires on its own (sas_lifetime_minutes)
            self.log.warning("[%s] could not revoke the user space's policy: %s", self._log_name, e)

    def _spark_config(self, profile: Profile | None) -> dict[str, Any] | None:
        raw = {**self.spark, **dict((profile.spark if profile else None) or {})}
        if not raw:
            return None
        from ..spark import SparkConfigError, parse_spark_settings, sparkmagic_config

        try:
            return sparkmagic_config(parse_spark_settings(raw))
        except SparkConfigError as e:
            raise errors.BadSettings("Spark", str(e)) from None

    def _instance_hub_url(self) -> str:
        return self.instance_hub_url or self.hub.api_url

    def _hub_audience(self) -> str:
        """The hub's Entra app: what an instance's managed-identity token must be for."""
        if self.instance_audience:
            return self.instance_audience
        return f"api://{getattr(self.authenticator, 'client_id', '') or 'aml-jupyterhub'}"

    # -- helpers ------------------------------------------------------------------------------------
    async def _read(self, workspace: Workspace) -> ComputeSnapshot | None:
        """A direct GET as the user (fresher than the last list), recorded in the shared cache."""
        assert self.compute_name is not None
        reflector = self._reflector(workspace)
        snapshot = await self._client(workspace).get(self.compute_name)
        await reflector.update(snapshot, self.compute_name)
        return snapshot

    async def _read_while(self, workspace: Workspace, other: Awaitable[None]) -> ComputeSnapshot | None:
        """:meth:`_read` concurrently with ``other``; ``other``'s failure first (it is the earlier step)."""
        done, current = await asyncio.gather(other, self._read(workspace), return_exceptions=True)
        for outcome in (done, current):
            if isinstance(outcome, BaseException):
                raise outcome
        return current

    def _client(self, workspace: Workspace) -> ComputeClient:
        """This user's ARM client for ``workspace`` (shared with the reflector, which may list as them)."""
        return self._reflector(workspace).register(self.user.name, self.arm_credential(self, self.user))

    def _reflector(self, workspace: Workspace) -> WorkspaceReflector:
        reflector = WorkspaceReflector.for_workspace(
            self._endpoint(), workspace, self.poll_interval_seconds, self.fast_poll_interval_seconds,
            self.fast_poll_pages_per_second,
        )
        reflector.register(self.user.name, self.arm_credential(self, self.user))
        Reconciler(self.hub_id, self._db(), WorkspaceReflector.all, self._stop_as_owner).start(self.reconcile_interval_seconds)
        if self.idle_culler:
            IdleCuller(self.user.settings).start(self.idle_cull_interval_seconds)
        return reflector

    async def _stop_as_owner(self, username: str, snapshot: ComputeSnapshot, workspace: Workspace) -> None:
        """Stop another server's orphaned instance as its owner (for the reconciler)."""
        orm_user = orm.User.find(self._db(), username)
        if orm_user is None:
            raise errors.SignInExpired(f"no hub user {username}")
        owner = HubUser(orm_user, self.user.settings)
        client = ComputeClient(self._endpoint(), workspace, self.arm_credential(self, owner))
        try:
            await client.stop(snapshot.name)
        finally:
            await client.close()

    def _endpoint(self) -> ArmEndpoint:
        return ArmEndpoint(self.arm_url, self.ca_bundle or None, self.azure_timeout_seconds)

    def _workspaces(self) -> dict[str, Workspace]:
        return parse_workspaces(self.workspaces)

    async def _profiles(self) -> list[Profile]:
        raw = self.profiles
        if callable(raw):
            raw = raw(self)
            if asyncio.iscoroutine(raw):
                raw = await raw
        return parse_profiles(raw, self._workspaces())

    async def _choose(self, user_options: dict[str, Any]) -> Choice:
        groups = [g.name for g in self.user.groups]
        try:
            return choose(await self._profiles(), groups, user_options)
        except ProfileError as e:
            raise web.HTTPError(400, str(e)) from None

    def _persist_state(self) -> None:
        self.orm_spawner.state = self.get_state()
        self._db().commit()

    def _db(self) -> Any:
        """The hub's session that holds this server's row (``Spawner.db`` is deprecated and warns on every use)."""
        return object_session(self.orm_spawner)

    def _emit(self, progress: int | None, message: str, ready: bool = False) -> None:
        """A progress event in the user's words, with the time since the start; progress never goes back."""
        elapsed = int(time.monotonic() - self._started_at) if self._started_at else 0
        event: dict[str, Any] = {"message": f"[{elapsed // 60}:{elapsed % 60:02d}] {message}", "time": time.time()}
        if progress is not None:
            event["progress"] = max(progress, self._progress_so_far())
        if ready:
            event["ready"] = True
        self._events.append(event)
        self._events_changed.set()
        self.log.info("[%s] %s", self._log_name, message)

    def _progress_so_far(self) -> int:
        return max((e.get("progress", 0) for e in self._events), default=0)

    def _describe(self, step: Step, current: ComputeSnapshot | None) -> str:
        name = self.compute_name
        return {
            Step.CREATE: f"Creating your compute instance {name} (Azure usually takes about 5 minutes).",
            Step.START: f"Starting your compute instance {name} (usually a minute or two).",
            Step.WAIT: f"Your compute instance {name} is on its way; waiting for it.",
            Step.START_WHEN_STOPPED: f"Your compute instance {name} is stopping; it will start again once stopped.",
            Step.CREATE_WHEN_GONE: f"Your compute instance {name} is being deleted; a new one follows.",
            Step.RECREATE: f"Replacing your compute instance {name} with a new one.",
        }[step]

    # -- options ------------------------------------------------------------------------------------
    @staticmethod
    async def _validate_user_options(spawner: AMLSpawner, user_options: dict[str, Any]) -> None:
        spawner._choice = await spawner._choose(dict(user_options or {}))

    @staticmethod
    async def _render_options_form(spawner: AMLSpawner) -> str:
        groups = [g.name for g in spawner.user.groups]
        mine = [p for p in await spawner._profiles() if p.allowed_for(groups)]
        own, others = await spawner._known_instances(mine)
        if len(mine) <= 1 and not own and not others:
            return ""  # nothing to choose or to warn about: skip the form
        selected = spawner.profile_key or next((p.key for p in mine if p.default), mine[0].key if mine else None)
        return _TEMPLATES.get_template("options_form.html").render(
            profiles=mine, workspaces=spawner._workspaces(), selected=selected, own=own, others=others,
            profile_names={p.key: p.display_name for p in mine}, currency=spawner.cost_currency,
        )  # fmt: skip

    async def _known_instances(self, profiles: list[Profile]) -> tuple[list[ComputeSnapshot], list[ComputeSnapshot]]:
        """This user's instances made by this hub, from the shared cache: (this server's, other servers')."""
        found: list[ComputeSnapshot] = []
        for key in sorted({p.workspace for p in profiles}):
            try:
                reflector = self._reflector(self._workspaces()[key])
                await reflector.wait_synced(self.form_wait_seconds)
            except (errors.ComputeError, asyncio.TimeoutError) as e:
                self.log.info("[%s] the form shows no instances of %s: %s", self._log_name, key, e)
                continue
            found += [s for s in reflector.snapshots.values() if owned_by(s.tags, self.hub_id, self.user.name)]
        own = [s for s in found if s.tags.get(TAG_SERVER, "") == self.name]
        return own, [s for s in found if s.tags.get(TAG_SERVER, "") != self.name]

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        try:
            return options_from_form(formdata)
        except ProfileError as e:
            raise web.HTTPError(400, str(e)) from None


_PROGRESS = {"Creating": 20, "SettingUp": 60, "UserSettingUp": 75, "Starting": 40, "Restarting": 40, "Stopping": 10, "Stopped": 15, "Running": 90}
_STATE_WORDS = {  # what each Azure state means for the person waiting
    "Creating": "Azure is creating your compute instance.",
    "SettingUp": "Azure is setting up your compute instance.",
    "UserSettingUp": "Running your startup script (it prepares your files and Spark kernels).",
    "Starting": "Starting your compute instance.",
    "Restarting": "Restarting your compute instance.",
    "Stopping": "Your compute instance is stopping; it starts again once stopped.",
    "Stopped": "Your compute instance is stopped; starting it.",
    "Deleting": "Your old compute instance is being deleted.",
    "Running": "Your compute instance runs; waiting for JupyterLab.",
    "Unknown": "Azure is checking on your compute instance.",
}


def _ready(snapshot: ComputeSnapshot | None) -> bool:
    return snapshot is not None and snapshot.phase is Phase.RUNNING and snapshot.jupyter_url() is not None


def _at_rest(snapshot: ComputeSnapshot | None) -> bool:
    return snapshot is None or snapshot.phase in (Phase.STOPPED, Phase.FAILED)
