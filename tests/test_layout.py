"""The package's architecture as tests: imports only go down the layers, and functions stay readable."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "recur_jax"
LAYERS = {"io": 0, "core": 1, "tasks": 2, "run": 3, "inference": 4, "study": 4, "parity": 4}
MAX_FUNCTION_CODE_LINES = 100


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield path, parts


def _imports(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):  # function-level imports included
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("recur_jax"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("recur_jax"))
    return out


def import_graph() -> dict[str, set[str]]:
    """package (top level under recur_jax) -> the packages its modules import (itself excluded)."""
    graph: dict[str, set[str]] = {}
    for path, parts in _modules():
        if len(parts) == 1:
            assert parts[0] == "__init__", f"{path}: modules live in a layer package ({sorted(LAYERS)})"
            continue
        pkg = parts[0]
        assert pkg in LAYERS, f"{path}: package {pkg!r} is not in a layer; add it to LAYERS"
        deps = {m.split(".")[1] for m in _imports(ast.parse(path.read_text())) if m.count(".") >= 1}
        graph.setdefault(pkg, set()).update(d for d in deps if d in LAYERS and d != pkg)
    return graph


def test_imports_only_go_down_the_layers():
    for pkg, deps in import_graph().items():
        for dep in deps:
            assert LAYERS[dep] < LAYERS[pkg], (
                f"recur_jax.{pkg} (layer {LAYERS[pkg]}) imports recur_jax.{dep} (layer {LAYERS[dep]}): "
                f"arrows must go down io < core < tasks < run < inference/study/parity")


def test_no_function_over_the_line_limit():
    too_long = []
    for path, _ in _modules():
        source = path.read_text()
        lines = source.split("\n")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                if not body:
                    continue
                code = [ln for ln in lines[body[0].lineno - 1:node.end_lineno]
                        if ln.strip() and not ln.strip().startswith("#")]
                if len(code) > MAX_FUNCTION_CODE_LINES:
                    too_long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({len(code)} lines)")
    assert not too_long, too_long


def test_every_package_says_what_it_holds():
    for path in sorted(ROOT.rglob("__init__.py")):
        assert ast.get_docstring(ast.parse(path.read_text())), f"{path}: add a docstring saying what the package holds"
