"""The layers point one way (poses -> corpus/data -> models -> train -> tasks -> commands): only the command
line speaks to people, nothing imports from a layer above it, and every module stays short enough to read
in one sitting."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "msmae"
MODULES = sorted(SRC.rglob("*.py"))
# What each layer may not import (a layer above it).
ABOVE = {
    "poses": ("msmae.extract", "msmae.corpus", "msmae.data", "msmae.models", "msmae.train", "msmae.tasks",
              "msmae.analysis"),
    "corpus": ("msmae.data", "msmae.models", "msmae.train", "msmae.tasks", "msmae.analysis"),
    "data": ("msmae.models", "msmae.train", "msmae.tasks", "msmae.analysis"),
    "models": ("msmae.train", "msmae.tasks"),
    "metrics": ("msmae.train", "msmae.tasks"),
    "train": ("msmae.tasks",),
}
PEOPLE = ("msmae.commands", "msmae.cli")


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def name(path: Path) -> str:
    return str(path.relative_to(SRC.parent))


@pytest.mark.parametrize("path", MODULES, ids=name)
def test_no_module_imports_from_a_layer_above_it(path):
    rel = path.relative_to(SRC).parts
    found = imports(path)
    if rel[0] not in ("commands", "cli.py", "__main__.py"):
        assert not [m for m in found if m.startswith(PEOPLE)], f"{name(path)} imports the command line"
    banned = ABOVE.get(rel[0], ())
    assert not [m for m in found if m.startswith(banned)], f"{name(path)} imports a higher layer"


@pytest.mark.parametrize("path", [p for p in MODULES if p.relative_to(SRC).parts[0] not in ("commands", "cli.py")],
                         ids=name)
def test_library_code_neither_prints_nor_reads_argparse(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert "print" not in calls, f"{name(path)} prints: return results and let msmae/commands/ print them"
    assert "argparse" not in imports(path), f"{name(path)} reads argparse"


def test_every_module_is_under_500_lines():
    long = {name(p): n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) >= 500}
    assert not long, f"split these modules: {long}"
