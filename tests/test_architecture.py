"""The import rules of DESIGN.md's package table, checked on the source (every import, lazy ones too).

Layers, lowest first: the leaf modules (errors, runtime, fileio, version, registry, faces,
synthetic_factors) import nothing else of latentshop's; ops; models; checkpoints / data / latents;
inversion / editing / metrics; apps; training; pipeline; cli and web. A module imports only what its
row allows, no two modules import each other (directly or round a loop), and no module imports
another's private (``_name``) names. Benchmarks and tools use the library, never the CLI.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC.parent
LEAVES = {"errors", "runtime", "fileio", "version", "registry", "faces", "synthetic_factors"}

#: group -> the groups it may import (besides itself and the leaf modules), per DESIGN.md's table
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),
    "ops": set(),
    "models": {"ops"},
    "checkpoints": {"models", "ops"},
    "data": set(),
    "latents": {"models", "ops"},
    "inversion": {"models", "ops", "latents", "metrics"},
    "editing": {"models", "ops", "latents"},
    "metrics": {"models", "ops"},
    "apps": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics"},
    "training": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics", "apps"},
    "pipeline": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics", "apps"},
    "web": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics", "apps", "pipeline",
            "training"},
    "cli": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics", "apps", "pipeline",
            "training", "web"},
    "package": {"ops", "models", "checkpoints", "data", "latents", "inversion", "editing", "metrics", "apps", "pipeline",
                "training"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((SRC / "latentshop").rglob("*.py"))}


MODULES = _modules()


def _group(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in LEAVES:
        return "leaf"
    return parts[1]


def _imports(path: Path, module: str) -> list[tuple[str, str | None, int]]:
    """``(imported module, imported name or None, line)`` of every latentshop import in a file."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "latentshop":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((target, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "latentshop":
                    out.append((alias.name, None, node.lineno))
    return out


EDGES = {m: _imports(p, m) for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_follow_the_layers(module):
    group = _group(module)
    allowed = ALLOWED[group] | {group, "leaf"}
    bad = []
    for target, _, line in EDGES[module]:
        tg = _group(target)
        if tg == "package" and group != "package":
            bad.append(f"line {line}: imports the root package ({target}); import the module that defines the name")
        elif tg not in allowed:
            bad.append(f"line {line}: {group} imports {tg} ({target})")
    assert not bad, f"{module}: " + "; ".join(bad)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_names_across_modules(module):
    bad = [f"line {line}: {target}.{name}" for target, name, line in EDGES[module]
           if name and name.startswith("_") and name != "__version__" and target != module]
    bad += _private_attributes(MODULES[module])
    assert not bad, f"{module} imports private names: {', '.join(bad)}"


def test_no_import_cycles():
    graph = {m: sorted({t if t in MODULES else t.rsplit(".", 1)[0] for t, _, _ in EDGES[m]} & set(MODULES) - {m})
             for m in MODULES}
    # a package's __init__ importing its own submodules (re-exports) is how packages are built: the
    # cycle to look for is a module importing back a module that (indirectly) imports it
    graph = {m: [t for t in ts if not (m != "latentshop" and t.startswith(m + "."))] for m, ts in graph.items()}
    graph["latentshop"] = []  # the root package imports everything; nothing may import it (checked above)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def _private_attributes(path: Path) -> list[str]:
    """``module._name`` reads of latentshop modules imported by a file (``from latentshop.ops import fast``)."""
    tree = ast.parse(path.read_text(), str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("latentshop"):
            modules |= {a.asname or a.name for a in node.names if f"{node.module}.{a.name}" in MODULES}
        elif isinstance(node, ast.Import):
            modules |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("latentshop")}
    return [f"line {n.lineno}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules
            and n.attr.startswith("_") and not n.attr.startswith("__")]


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for folder in ("benchmarks", "tools")
                                        for p in (ROOT / folder).glob("*.py")))
def test_benchmarks_and_tools_use_the_library_not_the_cli(path):
    bad = [f"{where} reads a private name" for where in _private_attributes(ROOT / path)]
    for target, name, line in _imports(ROOT / path, "benchmarks.x"):
        if target.startswith("latentshop.cli"):
            bad.append(f"line {line}: imports the CLI ({target})")
        if name and name.startswith("_") and name != "__version__":
            bad.append(f"line {line}: imports the private name {target}.{name}")
    assert not bad, f"{path}: " + "; ".join(bad)


def test_the_checker_sees_violations(tmp_path):
    """The checker itself: a lazy import across the layers and a private name are found."""
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from latentshop.cli.edit import edit_command\n    from latentshop.inversion.base import _check_range\n")
    found = _imports(f, "latentshop.models.m")
    assert ("latentshop.cli.edit", "edit_command", 2) in found and ("latentshop.inversion.base", "_check_range", 3) in found
    assert _group("latentshop.cli.edit") == "cli" and "cli" not in ALLOWED["models"]
