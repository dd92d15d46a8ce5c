"""The package's layers: data flows one way, and no two modules import each other (even in a function).

Layers, lowest first: the base (the modules directly in toolbox/: errors, atomic writes, cache
folder, process settings, the validated config that every layer reads), sources, models, analysis,
render, jobs, app, cli. A module may import its own layer and the ones below. Every ``import``
statement counts, including those inside functions and under TYPE_CHECKING: each is a real
dependency.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "toolbox"
LAYERS = ["base", "sources", "models", "analysis", "render", "jobs", "app", "cli"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS: a subpackage's name (toolbox.models.* -> models); the modules directly in
    toolbox/ are the base, except __main__ (the command line)."""
    parts = module.split(".")
    if module == "toolbox.__main__":
        return LAYERS.index("cli")
    if len(parts) == 1 or (len(parts) == 2 and MODULES[module].name != "__init__.py"):
        return 0
    if parts[1] not in LAYERS:
        raise AssertionError(f"package toolbox.{parts[1]} is in no layer: add it to LAYERS in {Path(__file__).name}")
    return LAYERS.index(parts[1])


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Modules of the package that the code ``source`` of ``module`` imports anywhere. ``from X
    import Y`` counts X.Y when Y is a module, else X; the parent packages that Python runs on the
    way are not counted (they are not what the code asked for)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package, up level-1 more
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module
            for alias in node.names:
                candidate = f"{origin}.{alias.name}"
                found.add(candidate if candidate in MODULES else origin)
    return {name for name in found if name in MODULES and name != module}


def imported_modules(module: str) -> set[str]:
    path = MODULES[module]
    return imports_in(path.read_text(), module, path.name == "__init__.py")


GRAPH = {module: imported_modules(module) for module in MODULES}


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_nothing_from_a_layer_above(module):
    own = layer_of(module)
    above = sorted(f"{name} ({LAYERS[layer_of(name)]})" for name in GRAPH[module] if layer_of(name) > own)
    assert not above, f"{module} ({LAYERS[own]}) imports from a layer above it: {', '.join(above)}"


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_between_modules():
    assert import_cycles(GRAPH) == []


def test_the_checks_see_function_level_imports_and_cycles():
    """The checker itself: an import inside a function counts, relative imports resolve, a two-module
    circle is found."""
    assert imports_in("def f():\n    from toolbox.app.live import run_live\n", "toolbox.models.registry") == {
        "toolbox.app.live"}
    assert imports_in("from .core import dream\nfrom ..saliency import backprop\nfrom . import presets\n",
                      "toolbox.analysis.dream.temporal") == {
        "toolbox.analysis.dream.core", "toolbox.analysis.saliency.backprop", "toolbox.analysis.dream.presets"}
    assert imports_in("from .core import dream\n", "toolbox.analysis.dream", is_package=True) == {
        "toolbox.analysis.dream.core"}
    assert imports_in("from toolbox.models import load_model\n", "toolbox.jobs.common") == {"toolbox.models"}
    assert import_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_docstring_says_what_it_does_not_which_issue_asked(module):
    docstring = ast.get_docstring(ast.parse(MODULES[module].read_text())) or ""
    assert not re.search(r"\bissues? #?\d", docstring, re.IGNORECASE), f"{module}: {docstring.splitlines()[0]}"
