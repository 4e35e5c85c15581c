"""The folder tree is the architecture: imports flow one way, and the core stays tiny.

devices -> pledgewatch; gateway -> devices, pledgewatch; anchor -> pledgewatch;
pledgewatch -> stdlib + PyNaCl only (it must load on a Raspberry Pi with nothing else).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"pledgewatch", "devices", "gateway", "anchor", "dashboards"}
ALLOWED = {
    "pledgewatch": set(),
    "devices": {"pledgewatch"},
    "gateway": {"devices", "pledgewatch"},
    "anchor": {"pledgewatch"},
    "dashboards": {"pledgewatch"},
}
CORE_THIRD_PARTY = {"nacl"}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package: str) -> None:
    wrong = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_top_levels(path) & OURS - {package} - ALLOWED[package]:
            wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_core_imports_only_stdlib_and_pynacl_statically() -> None:
    wrong = []
    for path in sorted((ROOT / "pledgewatch").rglob("*.py")):
        for name in imported_top_levels(path):
            if name in sys.stdlib_module_names or name in CORE_THIRD_PARTY or name == "pledgewatch":
                continue
            wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert wrong == []


def test_core_loads_in_a_fresh_interpreter_with_only_stdlib_and_pynacl() -> None:
    probe = """
import importlib, pkgutil, sys
before = set(sys.modules)  # what site.py loaded (venv and editable-install hooks)
import pledgewatch
for info in pkgutil.walk_packages(pledgewatch.__path__, 'pledgewatch.'):
    importlib.import_module(info.name)
allowed = set(sys.stdlib_module_names) | {'nacl', '_sodium', '_cffi_backend', 'pledgewatch'}
extra = sorted({m.split('.')[0] for m in set(sys.modules) - before} - allowed)
print(','.join(extra))
"""
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"core pulled in: {result.stdout.strip()}"
