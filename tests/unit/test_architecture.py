"""Dependencies point one way: daemon -> api -> storage, and daemon -> storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"storage": {"api", "daemon"}, "api": {"daemon"}, "daemon": set()}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_point_one_way(package: str) -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_packages(path) & FORBIDDEN[package]
    ]
    assert violations == []


def test_only_the_cron_module_imports_croniter() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for package in FORBIDDEN
        for path in (ROOT / package).rglob("*.py")
        if "croniter" in imported_packages(path)
    }
    assert importers == {"storage/cron.py"}


def test_the_checker_sees_a_backwards_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from daemon.engine import Engine\nimport api.app\n")
    assert imported_packages(sample) == {"daemon", "api"}
