"""Write ``docs/config-reference.md`` from the traits' own help: ``python -m aml_jupyterhub._config_reference``.

``make docs`` runs it; ``tests/docs/test_config_reference.py`` fails when the
committed file differs from what this module renders. To document another
configurable class, add it to :data:`CLASSES` (the only list of them).
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from traitlets import TraitType, Union
from traitlets.traitlets import DefaultHandler


@dataclass(frozen=True)
class Documented:
    path: str  # "module:Class"
    note: str  # how it is used, one sentence
    optional: bool = False  # skipped while its module does not exist yet


CLASSES: tuple[Documented, ...] = (
    Documented(
        "aml_jupyterhub.auth:AzureAdDelegatedAuthenticator",
        "Delegated Entra ID sign-in and the token broker (docs/token-broker.md). Only the settings this class "
        "adds or whose default it changes are listed; every `OAuthenticator` / `AzureAdOAuthenticator` setting "
        "(`tenant_id`, `client_id`, `client_secret`, `oauth_callback_url`, `allowed_groups`, `admin_groups`...) "
        "applies too: see oauthenticator's documentation.",
    ),
    Documented(
        "aml_jupyterhub.spawner:AMLSpawner",
        "Each user's Azure ML compute instance (docs/connection.md). JupyterHub's own `Spawner` settings apply "
        "too; those whose default differs here are listed at the end.",
    ),
    Documented(
        "aml_jupyterhub.hubdb:EntraDatabaseAuth",
        "The hub database on Azure Database for PostgreSQL with Entra ID tokens (docs/hub-database.md). "
        "Read by `configure_entra_db(c, url)`: set these before that call.",
    ),
    Documented(
        "aml_jupyterhub.userspace:UserSpace",
        "Each user's private file share (docs/user-space.md).",
        optional=True,
    ),
)

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"
COMMAND = "make docs"
HEADER = f"""# Configuration reference

Generated from the settings' own help text by `python -m aml_jupyterhub._config_reference`
(`{COMMAND}`); do not edit by hand. Every setting goes in `jupyterhub_config.py` as
`c.<Class>.<setting> = ...`; ready-to-adapt configs are in `deployments/`.
"""


def load(documented: Documented) -> type | None:
    module_name, _, class_name = documented.path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if documented.optional and e.name is not None and module_name.startswith(e.name):
            return None
        raise
    return getattr(module, class_name)


def entry_point_of(cls: type) -> str | None:
    target = f"{cls.__module__}:{cls.__name__}"
    for group in ("jupyterhub.authenticators", "jupyterhub.spawners"):
        for ep in entry_points(group=group):
            if ep.value == target:
                return ep.name
    return None


def type_name(trait: TraitType) -> str:
    if isinstance(trait, Union):
        return " or ".join(type_name(t) for t in trait.trait_types)
    return type(trait).__name__


def default_repr(trait: TraitType, cls: type) -> str:
    handler = _own_default_handler(cls, trait.name)
    if handler is not None:
        return _generated_default(handler)
    value = trait.default_value
    if callable(value):
        return f"{value.__module__}.{value.__qualname__}"
    return trait.default_value_repr()


def _own_default_handler(cls: type, name: str) -> Any:
    return next((v for v in vars(cls).values() if isinstance(v, DefaultHandler) and v.trait_name == name), None)


def _generated_default(handler: Any) -> str:
    """The expression a ``@default`` method returns, when it is a single ``return``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler.func)))
    body = [s for s in tree.body[0].body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
        return ast.unparse(body[0].value)
    return "computed when the hub starts"


def markdown_help(text: str) -> str:
    """Trait help (reStructuredText-ish) as Markdown: ``Example::`` blocks become fenced code."""
    out: list[str] = []
    lines = inspect.cleandoc(text or "").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            # The block is everything indented at least as much as its first line (cleandoc may have
            # left that at column 0 when the block is the help's only indented text).
            indent = len(lines[i]) - len(lines[i].lstrip()) if i < len(lines) else 0
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) >= indent):
                block.append(lines[i])
                i += 1
            code = textwrap.dedent("\n".join(block)).strip("\n")
            out += ["", "```python", *code.splitlines(), "```", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out).strip() or "(no help text)"


def own_traits(cls: type) -> dict[str, TraitType]:
    return dict(sorted(cls.class_own_traits(config=True).items()))


def changed_defaults(cls: type) -> Iterator[tuple[str, str, str]]:
    """(setting, class defining it, new default) for inherited settings whose default ``cls`` changes."""
    own = own_traits(cls)
    handlers = sorted((v.trait_name, v) for v in vars(cls).values() if isinstance(v, DefaultHandler))
    for name, handler in handlers:
        if name in own:
            continue
        definer = next(b for b in cls.__mro__[1:] if name in getattr(b, "class_own_traits", lambda **k: {})())
        yield name, definer.__name__, _generated_default(handler)


def overridden_in(cls: type, name: str) -> str | None:
    """The base class whose setting ``cls`` redefines, if any."""
    for base in cls.__mro__[1:]:
        if name in getattr(base, "class_own_traits", lambda **k: {})(config=True):
            return base.__name__
    return None


def render_class(cls: type, documented: Documented) -> str:
    name = cls.__name__
    doc = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    ep = entry_point_of(cls)
    parts = [f"## {name}", ""]
    where = f"`{documented.path.replace(':', '.')}`" + (f", entry point `{ep}`" if ep else "")
    parts += [f"{doc} ({where})", "", documented.note, ""]
    for trait_name, trait in own_traits(cls).items():
        parts += [f"### `c.{name}.{trait_name}`", ""]
        meta = f"Type `{type_name(trait)}`, default `{default_repr(trait, cls)}`"
        base = overridden_in(cls, trait_name)
        if base:
            meta += f" (redefines `{base}.{trait_name}`)"
        parts += [meta + ".", "", markdown_help(trait.help), ""]
    changed = list(changed_defaults(cls))
    if changed:
        parts += [
            f"### Inherited settings whose default {name} changes",
            "",
            "| setting | defined by | default here |",
            "| --- | --- | --- |",
            *[f"| `c.{name}.{n}` | `{definer}` | `{_cell(default)}` |" for n, definer, default in changed],
            "",
        ]
    return "\n".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render() -> str:
    sections: list[str] = [HEADER]
    missing: list[str] = []
    for documented in CLASSES:
        cls = load(documented)
        if cls is None:
            missing.append(documented.path.replace(":", "."))
            continue
        sections.append(render_class(cls, documented))
    if missing:
        sections.append("Not yet available (documented once implemented): " + ", ".join(f"`{m}`" for m in missing) + ".\n")
    return "\n".join(sections).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aml_jupyterhub._config_reference", description=__doc__)
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write (default: docs/config-reference.md)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
