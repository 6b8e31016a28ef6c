"""The package's shape holds: no import circle, and no module-level import against the layer order.

Layers, top to bottom (CONTRIBUTING.md draws the same picture): entry points (cli, serve, the root
package) -> evaluation -> loading (names, hub) -> catalog -> families -> engine -> the shared base
(images, tasks, errors, ...). A module may import its own layer and the layers below it at module
level; reaching up is done, where it must be, inside a function (imported on use).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import vlmzoo

ROOT = Path(vlmzoo.__file__).parent

# module-name prefix -> layer; the longest matching prefix wins, higher layers import lower ones
LAYERS = {
    "vlmzoo": 6, "vlmzoo.__main__": 6, "vlmzoo.cli": 6, "vlmzoo.serve": 6,
    "vlmzoo.evaluation": 5,
    "vlmzoo.loading": 4, "vlmzoo.names": 4, "vlmzoo.hub": 4,
    "vlmzoo.catalog": 3,
    "vlmzoo.families": 2,
    "vlmzoo.engine": 1,
    **{f"vlmzoo.{m}": 0 for m in ("errors", "tasks", "images", "safe_fetch", "urls", "prompts", "cache_dir",
                                  "extras", "draw", "samples", "modalities", "files")},
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level_imports(tree: ast.Module, modules: dict[str, Path], package: str):
    """(line, imported vlmzoo module) for each import that runs when the module is imported."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            if not _is_type_checking(node):
                stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("vlmzoo"):
                    yield node.lineno, _known(alias.name, modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("vlmzoo"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield node.lineno, sub if sub in modules else _known(base, modules)


def _known(name: str, modules: dict[str, Path]) -> str:
    while name not in modules and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _graph() -> dict[str, list[tuple[int, str]]]:
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = [(line, dep) for line, dep in _module_level_imports(tree, modules, package) if dep != name]
    return graph


def _layer(name: str) -> int:
    best = max((p for p in LAYERS if name == p or name.startswith(p + ".")), key=len)
    return LAYERS[best]


def test_every_module_has_a_layer():
    unplaced = [m for m in _modules() if m not in LAYERS and not any(m.startswith(p + ".") for p in LAYERS if p != "vlmzoo")]
    assert not unplaced, f"add these modules to LAYERS (and to CONTRIBUTING.md's picture): {unplaced}"


def test_no_import_reaches_up_a_layer():
    wrong = [f"{m}:{line} imports {dep} (layer {_layer(m)} -> {_layer(dep)})"
             for m, deps in _graph().items() for line, dep in deps if _layer(dep) > _layer(m)]
    assert not wrong, "module-level imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_circle():
    graph = {m: sorted({d for _, d in deps}) for m, deps in _graph().items()}
    index, low, on_stack, stack, circles = {}, {}, set(), [], []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_checker_sees_a_circle_and_an_upward_import(tmp_path):
    """The two checks above can fail: a made-up package with both faults is caught."""
    fake = {"vlmzoo.a": "from vlmzoo import b\n", "vlmzoo.b": "import vlmzoo.a\n",
            "vlmzoo.engine.x": "from vlmzoo.loading import load\n"}
    trees = {name: ast.parse(src) for name, src in fake.items()}
    modules = {**{n: Path(n) for n in fake}, "vlmzoo.loading": Path("loading")}
    edges = {n: [d for _, d in _module_level_imports(t, modules, n.rsplit(".", 1)[0])] for n, t in trees.items()}
    assert edges == {"vlmzoo.a": ["vlmzoo.b"], "vlmzoo.b": ["vlmzoo.a"], "vlmzoo.engine.x": ["vlmzoo.loading"]}
    assert _layer("vlmzoo.loading") > _layer("vlmzoo.engine.x")


def test_every_family_in_the_table_is_a_vlmodel_subclass():
    from vlmzoo.families import BUILTIN, family_class
    from vlmzoo.families.base import VLModel

    built = [f for f in BUILTIN if f.cls is not None]
    assert len(built) >= 19
    for family in built:
        cls = family_class(family.name)
        assert issubclass(cls, VLModel) and cls is not VLModel, family.name
    types = [t for f in BUILTIN for t in f.model_types]
    assert len(types) == len(set(types)), "a transformers model type is claimed twice"


def test_the_root_package_exports_lazily():
    code = ("import sys, vlmzoo; assert 'torch' not in sys.modules; "
            "names = [getattr(vlmzoo, n) for n in vlmzoo.__all__]; "
            "assert 'torch' not in sys.modules, 'an export imported torch'; print(len(names))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == len(vlmzoo.__all__)
    assert vlmzoo.load is importlib.import_module("vlmzoo.loading").load
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        vlmzoo.nope  # noqa: B018
