"""Profiles, plans, specs and the options form: pure functions, tested without Azure."""

from __future__ import annotations

import json
import re

import pytest

from aml_jupyterhub.spawner.connection import instance_root
from aml_jupyterhub.spawner.errors import ComputeFailed, NameCollision
from aml_jupyterhub.spawner.plan import Step, plan_start
from aml_jupyterhub.spawner.profiles import ProfileError, choose, parse_profiles, parse_workspaces
from aml_jupyterhub.spawner.snapshots import ComputeSnapshot
from aml_jupyterhub.spawner.specs import Owner, compute_instance_body, compute_instance_spec, ownership_tags

WORKSPACES = parse_workspaces(
    {"research": {"subscription_id": "s", "resource_group": "rg", "workspace_name": "ws", "location": "eastus"}}
)
RAW_PROFILES = [
    {"key": "small", "display_name": "Small", "workspace": "research", "vm_size": "Standard_DS3_v2", "default": True},
    {"key": "gpu", "display_name": "GPU", "workspace": "research", "vm_size": "Standard_NC6s_v3", "groups": ["gpu-users"]},
]
PROFILES = parse_profiles(RAW_PROFILES, WORKSPACES)
ALICE = Owner("alice@contoso.example", "oid-alice", "tid")


def snapshot(state, oid="oid-alice", errors=()):
    return ComputeSnapshot(name="jh-alice-x", state=state, assigned_oid=oid, errors=tuple(errors))


@pytest.mark.parametrize(
    "state, recreate, step",
    [
        (None, False, Step.CREATE),
        ("Stopped", False, Step.START),
        ("Running", False, Step.WAIT),
        ("Creating", False, Step.WAIT),
        ("Starting", False, Step.WAIT),
        ("Stopping", False, Step.START_WHEN_STOPPED),
        ("Deleting", False, Step.CREATE_WHEN_GONE),
        ("Unusable", False, Step.RECREATE),
        ("CreateFailed", False, Step.RECREATE),
        ("Running", True, Step.RECREATE),
        ("SetupFailed", True, Step.RECREATE),
    ],
)
def test_plan(state, recreate, step):
    current = None if state is None else snapshot(state)
    assert plan_start(current, ALICE, recreate) is step


def test_plan_never_takes_over_someone_elses_instance():
    with pytest.raises(NameCollision):
        plan_start(snapshot("Running", oid="oid-bob"), ALICE, recreate=True)


def test_plan_reports_setup_failure_with_azure_text():
    with pytest.raises(ComputeFailed, match="SetupScriptFailed: exit 1"):
        plan_start(snapshot("SetupFailed", errors=["SetupScriptFailed: exit 1"]), ALICE, recreate=False)


def test_choose_defaults_and_groups():
    assert choose(PROFILES, [], {}).profile.key == "small"
    assert choose(PROFILES, ["gpu-users"], {"profile": "gpu"}).profile.key == "gpu"
    with pytest.raises(ProfileError, match="Unknown or unavailable profile"):
        choose(PROFILES, [], {"profile": "gpu"})  # not in gpu-users
    with pytest.raises(ProfileError, match="Unknown options"):
        choose(PROFILES, [], {"profile": "small", "vm_size": "Standard_M416ms_v2"})
    with pytest.raises(ProfileError):
        choose(PROFILES, [], {"recreate": "yes please"})


@pytest.mark.parametrize(
    "bad, message",
    [
        ([{**RAW_PROFILES[0], "workspace": "nope"}], "unknown workspace"),
        ([{**RAW_PROFILES[0], "idle_shutdown_minutes": 5}], "idle_shutdown_minutes"),
        ([RAW_PROFILES[0], RAW_PROFILES[0]], "defined twice"),
        ([{**RAW_PROFILES[0], "vmsize": "x"}], "unknown keys"),
    ],
)
def test_admin_config_errors_are_clear(bad, message):
    with pytest.raises(ProfileError, match=message):
        parse_profiles(bad, WORKSPACES)


# The request body of Azure's official example "Create ComputeInstance Compute"
# (azure-rest-api-specs, Microsoft.MachineLearningServices 2023-08-01-preview,
# examples/Compute/createOrUpdate/ComputeInstance.json), trimmed to what the hub sets.
REFERENCE_CREATE_BODY = {
    "location": "eastus",
    "properties": {
        "computeType": "ComputeInstance",
        "properties": {
            "vmSize": "STANDARD_NC6",
            "applicationSharingPolicy": "Personal",
            "sshSettings": {"sshPublicAccess": "Disabled"},
            "computeInstanceAuthorizationType": "personal",
            "personalComputeInstanceSettings": {
                "assignedUser": {"objectId": "00000000-0000-0000-0000-000000000000", "tenantId": "00000000-0000-0000-0000-000000000000"}
            },
        },
    },
}


def shape(body: dict, prefix: str = "") -> set[str]:
    """Every key path of a JSON object (``a.b.c``)."""
    paths = set()
    for key, value in body.items():
        paths.add(prefix + key)
        if isinstance(value, dict):
            paths |= shape(value, f"{prefix}{key}.")
    return paths


def test_create_body_is_personal_with_idle_shutdown_and_tags_in_azures_shape():
    tags = ownership_tags("hub-1", ALICE, "", PROFILES[0])
    body = compute_instance_body(compute_instance_spec("jh-alice-abc", PROFILES[0], ALICE, tags), "westeurope")
    assert shape(REFERENCE_CREATE_BODY) <= shape(body)
    assert body["location"] == "westeurope" and body["properties"]["computeType"] == "ComputeInstance"
    props = body["properties"]["properties"]
    assert props["personalComputeInstanceSettings"]["assignedUser"] == {"objectId": "oid-alice", "tenantId": "tid"}
    assert props["computeInstanceAuthorizationType"] == "personal"
    assert props["idleTimeBeforeShutdown"] == "PT60M"
    assert props["vmSize"] == "Standard_DS3_v2"
    assert props["sshSettings"] == {"sshPublicAccess": "Disabled"}
    assert body["identity"] == {"type": "SystemAssigned"}
    assert body["tags"]["aml-jupyterhub-hub"] == "hub-1" and body["tags"]["aml-jupyterhub-user"] == ALICE.username
    assert json.loads(json.dumps(body)) == body  # plain JSON, ready for the pipeline


@pytest.mark.parametrize(
    "uri, root",
    [
        ("https://ci.eastus.instances.azureml.ms/lab", "https://ci.eastus.instances.azureml.ms/"),
        ("https://ci.eastus.instances.azureml.ms/tree/", "https://ci.eastus.instances.azureml.ms/"),
        ("https://127.0.0.1:9/instances/ci/lab", "https://127.0.0.1:9/instances/ci/"),
    ],
)
def test_instance_root(uri, root):
    assert instance_root(uri) == root


def test_options_form_escapes_admin_and_user_supplied_text():
    from aml_jupyterhub.spawner.spawner import _TEMPLATES

    hostile = parse_profiles(
        [{"key": 'x"><script>alert(1)</script>', "display_name": "<script>alert(2)</script>", "workspace": "research",
          "vm_size": "Standard_DS3_v2", "description": '"><img src=x onerror=alert(3)>', "cost_per_hour": 0.5}],
        WORKSPACES,
    )
    own = [ComputeSnapshot("jh-<b>bold</b>", "<i>CreateFailed</i>", tags={"aml-jupyterhub-profile": "<u>p</u>"})]
    others = [ComputeSnapshot("jh-<b>other</b>", "Running", tags={"aml-jupyterhub-server": "<s>srv</s>"})]
    for mine, theirs in ((own, []), ([], others)):
        html = _TEMPLATES.get_template("options_form.html").render(
            profiles=hostile, workspaces=WORKSPACES, selected=None, own=mine, others=theirs, profile_names={},
            currency="<em>EUR</em>",
        )  # fmt: skip
        assert "<script>alert" not in html and "<img" not in html
        assert not re.search(r"<(b|i|u|s|em)>", html), html
        assert "&lt;script&gt;alert(2)&lt;/script&gt;" in html
        assert 'value="x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
        assert "about 0.50 &lt;em&gt;EUR&lt;/em&gt; an hour" in html
    assert "jh-&lt;b&gt;other&lt;/b&gt;" in html and "&lt;s&gt;srv&lt;/s&gt;" in html


@pytest.mark.parametrize("cost", [-1, "cheap", True, float("inf")])
def test_a_profiles_cost_must_be_a_number(cost):
    with pytest.raises(ProfileError, match="cost_per_hour must be a number"):
        parse_profiles(
            [{"key": "p", "display_name": "P", "workspace": "research", "vm_size": "Standard_DS3_v2", "cost_per_hour": cost}],
            WORKSPACES,
        )
