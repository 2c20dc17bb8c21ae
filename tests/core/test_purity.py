"""The core imports no I/O and no clock (style.md, point 1)."""

import ast
import pathlib

import mtasts.core

CORE = pathlib.Path(mtasts.core.__file__).parent
FORBIDDEN = {"asyncio", "aiohttp", "dns", "sqlite3", "socket", "time", "datetime", "random",
             "os", "ssl", "cachetools", "redis", "subprocess", "threading", "logging", "selectors"}


def imported_roots(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.split(".")[0]
            yield root, node.lineno
            if root == "mtasts" and not (node.module.startswith("mtasts.core") or node.module == "mtasts.errors"):
                yield node.module, node.lineno


def test_core_modules_exist():
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"netstring", "socketmap", "txtrecord", "policy", "hostname", "nexthop", "reply", "freshness"} <= names


def test_core_is_pure():
    bad = []
    for path in sorted(CORE.glob("*.py")):
        for name, line in imported_roots(path):
            if name in FORBIDDEN or name.startswith("mtasts.") :
                bad.append(f"{path.name}:{line} imports {name}")
    assert bad == []


def test_errors_module_is_pure():
    path = CORE.parent / "errors.py"
    assert [n for n, _ in imported_roots(path) if n in FORBIDDEN] == []


def test_checker_catches_an_impure_import(tmp_path):
    fake = tmp_path / "x.py"
    fake.write_text("import time\nfrom mtasts.store import sqlite\n")
    found = {n for n, _ in imported_roots(fake)}
    assert "time" in found and "mtasts.store" in found
