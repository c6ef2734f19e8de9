"""The packages import in the order a study's data flows, never back: `objectives` (training)
imports no `searcher`; in `searcher`, `study` imports neither `verdict` nor `views`, and `verdict`
does not import `views`. Only the command (`searcher/cli.py`) and the public names
(`searcher/__init__.py`) draw on all three."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each package, and the packages it must not import.
FORBIDDEN = {
    "objectives": ("searcher",),
    "searcher/study": ("searcher.verdict", "searcher.views", "searcher.cli"),
    "searcher/verdict": ("searcher.views", "searcher.cli"),
    "searcher/views": ("searcher.cli",),
}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("package", FORBIDDEN)
def test_a_package_imports_only_those_before_it(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path))
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package])
    ]
    assert not wrong, wrong
