"""The package's layers import one way: server -> engine -> distributed -> models -> kernels; grammar is below
engine. Every ``lightllm_struct`` import of every module (top-level or inside a function) is read with ``ast``.
"""
from __future__ import annotations

import ast
from pathlib import Path

import lightllm_struct

PACKAGE = Path(lightllm_struct.__file__).parent

# A layer may import its own modules and those of every layer with a lower rank. The data model and the
# configuration sit under everything; the public face (llm, client, cli) over everything.
RANKS = {
    "errors": 0, "config": 1, "request": 1, "registry": 1, "shorthand": 2,
    "kernels": 2, "grammar": 2, "models": 3, "distributed": 4, "engine": 5, "server": 6,
    "llm": 7, "client": 8, "cli": 9, "__init__": 9,
}
# grammar and kernels share a rank but are independent: neither may import the other.
APART = {("grammar", "kernels"), ("kernels", "grammar")}


def _layer(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, layer)`` of every ``lightllm_struct.<layer>`` import in ``path``; a relative import is ``"."``.

    The package imports absolutely, so a relative import is reported rather than resolved.
    """
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            names = ["." if node.level else node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if name == ".":
                found.append((node.lineno, "."))
            elif parts[0] == "lightllm_struct" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _layer(path.relative_to(PACKAGE).parts)
        for line, there in _imports(path):
            if there == here:
                continue
            if there == ".":
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports relatively")
                continue
            if RANKS[there] >= RANKS[here] or (here, there) in APART:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({here}) imports lightllm_struct.{there}")
    return bad


def test_every_module_has_a_layer():
    layers = {_layer(p.relative_to(PACKAGE).parts) for p in PACKAGE.rglob("*.py")}
    assert layers <= set(RANKS), f"modules outside any layer: {sorted(layers - set(RANKS))}"


def test_no_import_runs_upward():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "lightllm_struct"
    (fake / "kernels").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "kernels" / "bad.py").write_text("def f():\n    from lightllm_struct.models import ops\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PACKAGE"]), "PACKAGE", fake)
    assert upward_imports() == ["lightllm_struct/kernels/bad.py:2 (kernels) imports lightllm_struct.models"]
