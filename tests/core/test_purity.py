"""The core imports no I/O and no clock (the README's layout): every import form, resolved."""

import ast
import pathlib

import pytest

import mtasts.core

CORE = pathlib.Path(mtasts.core.__file__).parent
FORBIDDEN = {"asyncio", "aiohttp", "dns", "sqlite3", "socket", "time", "datetime", "random", "os", "ssl",
             "cachetools", "redis", "subprocess", "threading", "logging", "selectors", "pathlib", "io", "shutil",
             "tempfile", "signal", "glob", "urllib", "http", "multiprocessing", "concurrent"}
# Built-ins that reach the outside world.
FORBIDDEN_CALLS = {"open", "input", "exec", "eval", "__import__", "breakpoint"}
PACKAGE = "mtasts.core"


def problems(path, package=PACKAGE):
    """Each impure import or call in *path*, as "line: what"."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                absolute = ".".join(base + ([node.module] if node.module else []))
                modules = [absolute] if node.module else [f"{absolute}.{a.name}" for a in node.names]
            else:
                modules = [node.module]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
            found.append(f"{node.lineno}: calls {node.func.id}()")
        for module in modules:
            root = module.split(".")[0]
            if root in FORBIDDEN:
                found.append(f"{node.lineno}: imports {module}")
            elif root == "mtasts" and not (module == "mtasts.core" or module.startswith("mtasts.core.")
                                           or module == "mtasts.errors"):
                found.append(f"{node.lineno}: imports {module} (outside the core)")
    return found


def test_core_modules_exist():
    names = {p.stem for p in CORE.glob("*.py")}
    assert {"netstring", "socketmap", "txtrecord", "policy", "hostname", "nexthop", "reply", "freshness",
            "postfixcaps", "dane"} <= names


def test_core_is_pure():
    bad = [f"{path.name}:{p}" for path in sorted(CORE.glob("*.py")) for p in problems(path)]
    assert bad == []


def test_errors_module_is_pure():
    assert problems(CORE.parent / "errors.py", package="mtasts") == []


@pytest.mark.parametrize("planted,expected", [
    ("import time\n", "imports time"),
    ("from mtasts.store import sqlite\n", "imports mtasts.store (outside the core)"),
    ("import mtasts.net.dns\n", "imports mtasts.net.dns (outside the core)"),
    ("from ..net import dns\n", "imports mtasts.net (outside the core)"),
    ("from .. import resolver\n", "imports mtasts.resolver (outside the core)"),
    ("from . import policy\n", None),
    ("from .policy import parse_policy\n", None),
    ("from pathlib import Path\n", "imports pathlib"),
    ("import io\n", "imports io"),
    ("data = open('/etc/passwd').read()\n", "calls open()"),
    ("import os.path\n", "imports os.path"),
])
def test_the_checker_catches_each_import_form(tmp_path, planted, expected):
    fake = tmp_path / "x.py"
    fake.write_text(planted)
    found = problems(fake)
    if expected is None:
        assert found == []
    else:
        assert found == [f"1: {expected}"]
