"""Names and states: pure functions, no Azure needed."""

from __future__ import annotations

import pytest
from azure.ai.ml._restclient.arm_ml_service.models import ComputeInstanceState

from aml_jupyterhub.spawner.slugs import compute_instance_name, is_valid_compute_name
from aml_jupyterhub.spawner.states import STATE_PHASES, Phase, phase_of

# ComputeInstanceState as the REST spec has it (azure-ai-ml's models are generated from it).
AZURE_STATES = {state.value for state in ComputeInstanceState}


@pytest.mark.parametrize(
    "name, valid",
    [("abc", True), ("ab", False), ("a" * 24, True), ("a" * 25, False), ("1abc", False), ("ab-c", True),
     ("ab-12", False), ("ab-12x", True), ("ab_c", False), ("ab-", False), ("a-b-1", False)],
)
def test_azure_name_rules(name, valid):
    assert is_valid_compute_name(name) is valid


@pytest.mark.parametrize(
    "username",
    ["alice@contoso.example", "Bob.Builder@contoso.example", "ünïcødé@x", "1234@x", "---", "a" * 80, "<script>"],
)
def test_names_are_always_valid(username):
    name = compute_instance_name("jh", username, "oid-1", "", "small", "hub-1")
    assert is_valid_compute_name(name), name


def test_names_are_stable_and_distinct():
    base = dict(prefix="jh", username="alice@contoso.example", user_oid="oid-a", server_name="", profile="small", hub_id="h")
    name = compute_instance_name(**base)
    assert name == compute_instance_name(**base)
    assert name.startswith("jh-alice-")
    variants = [
        {**base, "user_oid": "oid-b"},
        {**base, "server_name": "gpu"},
        {**base, "profile": "large"},
        {**base, "hub_id": "other-hub"},
    ]
    names = {compute_instance_name(**v) for v in variants}
    assert len(names) == len(variants) and name not in names


def test_same_readable_part_different_users_do_not_collide():
    a = compute_instance_name("jh", "alice@contoso.example", "oid-1", "", "p", "h")
    b = compute_instance_name("jh", "alice@fabrikam.example", "oid-2", "", "p", "h")
    assert a != b


def test_bad_prefix_is_refused():
    with pytest.raises(ValueError):
        compute_instance_name("9x", "alice", "o", "", "p", "h")
    with pytest.raises(ValueError):
        compute_instance_name("averyveryverylongprefix", "alice", "o", "", "p", "h")


def test_every_azure_state_is_mapped_explicitly():
    assert set(STATE_PHASES) == AZURE_STATES
    assert phase_of("Running") is Phase.RUNNING
    assert phase_of("Stopping") is Phase.PENDING
    assert phase_of("Unusable") is Phase.FAILED
    assert "Resizing" in AZURE_STATES and phase_of("Resizing") is Phase.PENDING
    assert phase_of(None) is Phase.STOPPED
    assert phase_of("SomethingNew") is Phase.PENDING
