"""Admin-defined workspaces and profiles, and the server-side check of what a user picked.

Admins describe workspaces and profiles as plain dicts in ``jupyterhub_config.py``;
they are parsed once into frozen dataclasses with clear errors. A user only
ever submits a profile *key* (and whether to recreate); everything else comes
from here, so a tampered form or API request cannot ask for anything the admin
did not offer to that user.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

MIN_IDLE_MINUTES = 15
MAX_IDLE_MINUTES = 3 * 24 * 60


class ProfileError(ValueError):
    """Bad admin configuration, or a user choice the configuration does not allow."""


@dataclass(frozen=True)
class Workspace:
    key: str
    subscription_id: str
    resource_group: str
    workspace_name: str
    location: str = ""
    display_name: str = ""

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace_name}"
        )


@dataclass(frozen=True)
class Profile:
    key: str
    display_name: str
    workspace: str  # a Workspace key
    vm_size: str
    description: str = ""
    idle_shutdown_minutes: int = 60
    groups: tuple[str, ...] = ()  # JupyterHub groups that may use it; empty: everyone
    default: bool = False
    schedules: tuple[Mapping[str, Any], ...] = ()  # azure-ai-ml ComputeStartStopSchedule kwargs
    spark: Mapping[str, Any] | None = None  # Spark kernel settings, merged over AMLSpawner.spark

    def allowed_for(self, user_groups: Iterable[str]) -> bool:
        return not self.groups or bool(set(self.groups) & set(user_groups))


def _build(cls: type, raw: Mapping[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise ProfileError(f"{what}: unknown keys {sorted(unknown)} (known: {sorted(known)})")
    try:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except TypeError as e:
        raise ProfileError(f"{what}: {e}") from None


def parse_workspaces(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Workspace]:
    return {key: _build(Workspace, {"key": key, **spec}, f"workspace {key!r}") for key, spec in raw.items()}


def parse_profiles(raw: Iterable[Mapping[str, Any]], workspaces: Mapping[str, Workspace]) -> list[Profile]:
    """Validate the admin's profile list (unique keys, known workspaces, idle shutdown in Azure's range)."""
    profiles = [_build(Profile, spec, f"profile {spec.get('key', '?')!r}") for spec in raw]
    seen: set[str] = set()
    for p in profiles:
        if p.key in seen:
            raise ProfileError(f"profile {p.key!r} is defined twice")
        seen.add(p.key)
        if p.workspace not in workspaces:
            raise ProfileError(f"profile {p.key!r} names unknown workspace {p.workspace!r}")
        if not MIN_IDLE_MINUTES <= p.idle_shutdown_minutes <= MAX_IDLE_MINUTES:
            raise ProfileError(
                f"profile {p.key!r}: idle_shutdown_minutes must be {MIN_IDLE_MINUTES}..{MAX_IDLE_MINUTES} (Azure's range)"
            )
    return profiles


@dataclass(frozen=True)
class Choice:
    """What a user asked for, after validation."""

    profile: Profile
    recreate: bool = False


ALLOWED_OPTIONS = {"profile", "recreate"}


FORM_IGNORED = {"_xsrf"}  # JupyterHub's own field on every form post
FORM_TRUE, FORM_FALSE = {"yes", "on", "true"}, {"no", "off", "false", ""}


def options_from_form(formdata: Mapping[str, list[Any]]) -> dict[str, Any]:
    """The spawn form's fields as ``user_options``, as strict as the REST path: unknown fields are refused."""
    fields = {k: v for k, v in formdata.items() if k not in FORM_IGNORED}
    unknown = set(fields) - ALLOWED_OPTIONS
    if unknown:
        raise ProfileError(f"Unknown options {sorted(str(u)[:40] for u in unknown)}; this hub accepts {sorted(ALLOWED_OPTIONS)}")
    for name, values in fields.items():
        if len(values) != 1 or not isinstance(values[0], str):
            raise ProfileError(f"Option {name!r} must be given once, as text")
    options: dict[str, Any] = {}
    if fields.get("profile", [""])[0]:
        options["profile"] = fields["profile"][0]
    if "recreate" in fields:
        value = fields["recreate"][0].strip().lower()
        if value not in FORM_TRUE | FORM_FALSE:
            raise ProfileError("Option 'recreate' must be yes or no")
        options["recreate"] = value in FORM_TRUE
    return options


def choose(profiles: list[Profile], user_groups: Iterable[str], user_options: Mapping[str, Any]) -> Choice:
    """The profile ``user_options`` selects, if this user may use it; else :class:`ProfileError`."""
    unknown = set(user_options) - ALLOWED_OPTIONS
    if unknown:
        raise ProfileError(f"Unknown options {sorted(unknown)}; this hub accepts {sorted(ALLOWED_OPTIONS)}")
    mine = [p for p in profiles if p.allowed_for(user_groups)]
    if not mine:
        raise ProfileError("No compute profile is available to you; ask your administrator.")
    key = user_options.get("profile")
    if key is None:
        profile = next((p for p in mine if p.default), mine[0])
    else:
        profile = next((p for p in mine if p.key == key), None)
        if profile is None:
            raise ProfileError(f"Unknown or unavailable profile {str(key)[:64]!r}; choose one of {[p.key for p in mine]}")
    recreate = user_options.get("recreate", False)
    if not isinstance(recreate, bool):
        raise ProfileError("Option 'recreate' must be true or false")
    return Choice(profile, recreate)
