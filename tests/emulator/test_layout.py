"""The emulator's shape (docs/emulator.md, "Map of the packages"), checked on the source.

One package per emulated service plus ``core``; no import circles; services meet only
through ``core`` or another service's package interface; the product never imports the
emulator. Every import counts, including those under ``TYPE_CHECKING`` or inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aml_jupyterhub

ROOT = Path(aml_jupyterhub.__file__).parent
EMULATOR = "aml_jupyterhub.emulator"
SERVICES = {"entra", "graph", "arm", "files", "instances", "livy", "databricks"}
TOP_LEVEL = {"__init__", "__main__", "client", "demo"}
PRODUCT = ("auth", "spawner", "spark", "userspace", "instance", "hubdb", "pages", "tokens", "settings_env", "user_errors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Absolute names of the aml_jupyterhub modules (or packages) ``path`` imports."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import module`
    return {f for f in found if f.startswith("aml_jupyterhub")}


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}
GRAPH = {name: {i for i in imports_of(path) if i in MODULES and i != name} for name, path in MODULES.items()}


def service_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if module.startswith(EMULATOR + ".") and len(parts) > 2 else None


def test_one_package_per_service_and_a_core():
    emulator = ROOT / "emulator"
    packages = {p.name for p in emulator.iterdir() if (p / "__init__.py").exists()}
    assert packages == SERVICES | {"core"}
    assert {p.stem for p in emulator.glob("*.py")} == TOP_LEVEL
    for service in SERVICES:
        assert (emulator / service / "routes.py").exists(), f"{service} has no routes.py"


def test_no_import_circles():
    emulator = {m: {i for i in deps if i.startswith(EMULATOR)} for m, deps in GRAPH.items() if m.startswith(EMULATOR)}
    # A package's __init__ re-exporting its own modules is not a circle through the package.
    for m in emulator:
        emulator[m] = {i for i in emulator[m] if not m.startswith(i + ".")}
    visiting, done, cycles = set(), set(), []

    def visit(node: str, path: list[str]) -> None:
        if node in visiting:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        visiting.add(node)
        for nxt in sorted(emulator.get(node, ())):
            visit(nxt, [*path, nxt])
        visiting.discard(node)
        done.add(node)

    for m in sorted(emulator):
        visit(m, [m])
    assert cycles == []


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if service_of(m) in SERVICES | {"core"}))
def test_services_meet_only_through_core_or_a_package_interface(module):
    own = service_of(module)
    for target in GRAPH[module]:
        other = service_of(target)
        if other is None or other == own or other == "core" and own != "core":
            continue
        if own == "core":
            pytest.fail(f"core module {module} imports the service module {target}")
        assert target == f"{EMULATOR}.{other}", f"{module} reaches into {target}; use {EMULATOR}.{other} or core"


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_never_imports_the_emulator(package):
    for module, deps in GRAPH.items():
        if module == f"aml_jupyterhub.{package}" or module.startswith(f"aml_jupyterhub.{package}."):
            assert not [d for d in deps if d.startswith(EMULATOR)], module
