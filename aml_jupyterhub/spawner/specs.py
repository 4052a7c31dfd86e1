"""Pure functions that build what the spawner asks Azure for. Tested without Azure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.ai.ml.entities import (
    AssignedUserConfiguration,
    ComputeInstance,
    ComputeSchedules,
    ComputeStartStopSchedule,
    IdentityConfiguration,
    ScriptReference,
    SetupScripts,
)

from .profiles import Profile

TAG_HUB = "aml-jupyterhub-hub"
TAG_USER = "aml-jupyterhub-user"
TAG_SERVER = "aml-jupyterhub-server"
TAG_PROFILE = "aml-jupyterhub-profile"
TAG_CREATE = "aml-jupyterhub-create"  # a random id per create request: what a timed-out create made


@dataclass(frozen=True)
class Owner:
    """The Entra identity a compute instance is personal to."""

    username: str
    oid: str
    tenant_id: str


def ownership_tags(hub_id: str, owner: Owner, server_name: str, profile: Profile) -> dict[str, str]:
    """Tags that let the reconciler find what this hub created, and for whom."""
    return {
        TAG_HUB: hub_id,
        TAG_USER: owner.username,
        TAG_SERVER: server_name,
        TAG_PROFILE: profile.key,
    }


def owned_by(tags: dict[str, str] | Any, hub_id: str, username: str) -> bool:
    """Whether an instance's tags say this hub made it for ``username``."""
    return tags.get(TAG_HUB) == hub_id and tags.get(TAG_USER) == username


def compute_instance_spec(
    name: str,
    profile: Profile,
    owner: Owner,
    tags: dict[str, str],
    startup_script: ScriptReference | None = None,
) -> ComputeInstance:
    """A personal compute instance for ``owner``: idle shutdown on, no public SSH, its own managed identity
    (how it proves itself to the hub), and the startup script when there is one."""
    schedules = None
    if profile.schedules:
        schedules = ComputeSchedules(compute_start_stop=[ComputeStartStopSchedule(**s) for s in profile.schedules])
    return ComputeInstance(
        name=name,
        size=profile.vm_size,
        description=f"{profile.display_name} for {owner.username} (aml-jupyterhub)",
        tags=tags,
        create_on_behalf_of=AssignedUserConfiguration(user_tenant_id=owner.tenant_id, user_object_id=owner.oid),
        idle_time_before_shutdown_minutes=profile.idle_shutdown_minutes,
        schedules=schedules,
        setup_scripts=SetupScripts(startup_script=startup_script) if startup_script else None,
        ssh_public_access_enabled=False,
        identity=IdentityConfiguration(type="system_assigned"),
    )


def compute_instance_body(spec: ComputeInstance, location: str) -> dict[str, Any]:
    """The PUT body for ``spec``, exactly as azure-ai-ml's ``begin_create_or_update`` serialises it
    (the SDK stays the source of the REST shape; the request itself goes through the async pipeline)."""
    from azure.ai.ml._restclient.arm_ml_service._utils.model_base import SdkJSONEncoder

    spec.location = location
    rest = spec._to_rest_object()
    return json.loads(json.dumps(rest, cls=SdkJSONEncoder, exclude_readonly=True))
