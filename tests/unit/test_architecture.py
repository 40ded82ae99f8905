"""Dependencies point one way: daemon -> api -> storage, and daemon -> storage.

Within storage, the API and the engine know the store by its interface (`storage.store`);
only the daemon's composition root names the SQLite implementation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"storage": {"api", "daemon"}, "api": {"daemon"}, "daemon": set()}
SQLITE_STORE = ("storage.db", "storage.prepared", "storage.sqlite_")
"""The SQLite implementation of `storage.store.Store`: these modules, and every
`storage.sqlite_*` one."""
COMPOSITION_ROOT = "daemon/service.py"


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


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, by its dotted name (`from a import b` counts as `a.b`
    too, since b may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def sqlite_store_imports(path: Path) -> list[str]:
    return sorted(name for name in imported_modules(path) if name.startswith(SQLITE_STORE))


def test_the_api_knows_the_store_only_by_its_interface() -> None:
    violations = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "api").rglob("*.py"))
        for name in sqlite_store_imports(path)
    ]
    assert violations == []


def test_only_the_composition_root_names_the_sqlite_store() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "daemon").rglob("*.py")
        if sqlite_store_imports(path)
    }
    assert importers == {COMPOSITION_ROOT}


def test_only_the_cron_grammar_imports_croniter() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for package in FORBIDDEN
        for path in (ROOT / package).rglob("*.py")
        if "croniter" in imported_packages(path)
    }
    assert importers == {"storage/cron_grammar.py"}


def test_the_checker_sees_a_backwards_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from daemon.engine import Engine\nimport api.app\n")
    assert imported_packages(sample) == {"daemon", "api"}


def test_the_checker_sees_an_import_of_the_sqlite_store(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import storage.db\nfrom storage import sqlite_runs\nfrom storage.store import Store\n"
    )
    assert sqlite_store_imports(sample) == ["storage.db", "storage.sqlite_runs"]
