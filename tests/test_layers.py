"""Imports run one way: ``suite -> methods -> spaces -> core`` (DESIGN.md, "Layers").

Every ``import`` and ``from ... import`` of the four packages is read from the source (including
imports inside functions and under ``TYPE_CHECKING``), so a method that reaches into the product
layer, or a space that needs a method, fails here with the file and line.
"""

from __future__ import annotations

import ast

import pytest
from conftest import ROOT

LAYERS = ("core", "spaces", "methods", "suite")  # bottom to top


def imported_modules(path):
    """``(line, module)`` of every import in the file at ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def upward_imports(package: str) -> list[str]:
    level = LAYERS.index(package)
    above = set(LAYERS[level + 1:])
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in imported_modules(path):
            if module.split(".")[0] in above:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("package", LAYERS[:-1])
def test_no_layer_imports_a_layer_above_it(package):
    assert upward_imports(package) == []


def test_the_check_finds_an_upward_import(tmp_path, monkeypatch):
    """The check itself: a file of the bottom layer that imports the product layer is reported."""
    import conftest

    fake = tmp_path / "core"
    fake.mkdir()
    (fake / "bad.py").write_text("def f():\n    from suite.harness import Experiment\n")
    monkeypatch.setattr(conftest, "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    assert upward_imports("core") == ["core/bad.py:2 imports suite.harness"]
