"""Dependencies point one way (ARCHITECTURE.md, issue 11 §2): between apps, only down the layers; inside
an app, no module imports one that imports it back, counting imports made inside functions too (a
call-time import is still a dependency; services queue their tasks by name, see privacyops.queueing)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Lower layers never import higher ones; apps in one layer do not import each other.
LAYERS = [
    {"privacyops"},
    {"accounts"},
    {"inventory"},
    {"chat", "retention", "policies"},
    {"consents"},
    {"requests", "training"},
]
LAYER = {app: level for level, apps in enumerate(LAYERS) for app in apps}
APPS = sorted(path.parent.name for path in ROOT.glob("*/apps.py"))


def _modules(app: str):
    for path in sorted((ROOT / app).rglob("*.py")):
        if "migrations" not in path.parts:
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            yield name, path, is_package


def _is_module(dotted: str) -> bool:
    base = ROOT.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _imports(name: str, path: Path, is_package: bool) -> set[str]:
    """The project modules `path` imports: `from pkg import sub` counts as the submodule, not the package."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base)
    return {module for module in found if module.split(".")[0] in APPS}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, done, path = [], set(), []

    def visit(module):
        path.append(module)
        for target in sorted(graph[module]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target not in done:
                visit(target)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        if module not in done:
            visit(module)
    return cycles


def test_every_app_has_a_layer():
    assert set(APPS) == set(LAYER), "name the new app's layer here and in ARCHITECTURE.md"


def test_apps_import_only_apps_below_them():
    wrong = []
    for app in APPS:
        for name, path, is_package in _modules(app):
            for target in _imports(name, path, is_package):
                other = target.split(".")[0]
                if other != app and LAYER[other] >= LAYER[app]:
                    wrong.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_inside_any_app():
    cycles = []
    for app in APPS:
        modules = {name: (path, is_package) for name, path, is_package in _modules(app)}
        graph = {
            name: {t for t in _imports(name, path, is_package) if t in modules and t != name}
            for name, (path, is_package) in modules.items()
        }
        cycles += [" -> ".join(cycle) for cycle in _cycles(graph)]
    assert not cycles, "\n".join(cycles)


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    """The check is not blind to the call-time imports it exists to catch."""
    module = tmp_path / "services.py"
    module.write_text("def queue():\n    from requests.tasks import erasure_run\n", encoding="utf-8")
    assert "requests.tasks" in _imports("requests.services", module, False)
