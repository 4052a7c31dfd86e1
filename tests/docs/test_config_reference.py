"""docs/config-reference.md is generated from the traits' help and must match the code."""

from __future__ import annotations

import difflib

import pytest

from aml_jupyterhub import _config_reference as ref


def test_committed_reference_matches_the_code():
    committed = ref.OUTPUT.read_text() if ref.OUTPUT.exists() else ""
    generated = ref.render()
    if committed != generated:
        diff = "".join(difflib.unified_diff(committed.splitlines(True), generated.splitlines(True), "committed", "generated", n=1))
        pytest.fail(
            f"docs/config-reference.md is out of date: run `make docs` "
            f"(or `.venv/bin/python -m aml_jupyterhub._config_reference`) and commit it.\n{diff[:4000]}"
        )


def test_every_setting_of_every_class_is_documented_with_help():
    text = ref.render()
    for documented in ref.CLASSES:
        cls = ref.load(documented)
        if cls is None:
            assert documented.optional and documented.path.replace(":", ".") in text
            continue
        traits = ref.own_traits(cls)
        assert traits, documented.path
        for name, trait in traits.items():
            assert f"### `c.{cls.__name__}.{name}`" in text
            assert (trait.help or "").strip(), f"{cls.__name__}.{name} has no help text"


def test_inherited_settings_are_marked_not_listed_as_own():
    text = ref.render()
    assert "### `c.AzureAdDelegatedAuthenticator.client_id`" not in text  # oauthenticator's, not ours
    assert "| `c.AzureAdDelegatedAuthenticator.username_claim` | `OAuthenticator` | `'preferred_username'` |" in text
    assert "(redefines `OAuthenticator.login_service`)" in text
    assert "| `c.AMLSpawner.start_timeout` | `Spawner` | `20 * 60` |" in text


def test_help_examples_become_fenced_code():
    md = ref.markdown_help("""Workspaces, by key::

            {"a": {"b": 1,
                   "c": 2}}
        """)
    assert md == 'Workspaces, by key:\n\n```python\n{"a": {"b": 1,\n       "c": 2}}\n```'


def test_an_optional_class_whose_module_is_missing_is_skipped():
    missing = ref.Documented("aml_jupyterhub.no_such_module:Thing", "later", optional=True)
    assert ref.load(missing) is None
    with pytest.raises(ModuleNotFoundError):
        ref.load(ref.Documented("aml_jupyterhub.no_such_module:Thing", "now"))


def test_check_mode_reports_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "ref.md"
    stale.write_text("old\n")
    assert ref.main(["--output", str(stale), "--check"]) == 1
    assert "make docs" in capsys.readouterr().err
    assert ref.main(["--output", str(stale)]) == 0
    assert ref.main(["--output", str(stale), "--check"]) == 0
