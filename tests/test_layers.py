"""The house's plan, held against its imports: a pure core, and layers that import only
downwards (README, "Layout"). Every import form is read, resolved and judged:

* ``mtasts.core`` imports no I/O, no clock and nothing of mtasts but itself and the errors;
* each room imports only rooms below it, or itself (``LAYERS``);
* an import inside a function is allowed only where ``LAZY`` says why: an optional
  dependency, or a command line that loads only the command it runs.
"""

from __future__ import annotations

import ast
import pathlib
from typing import List, Optional, Tuple

import pytest

import mtasts

PACKAGE_DIR = pathlib.Path(mtasts.__file__).parent

# Lowest first. A module may import its own room and the rooms of lower rows, never a room of
# its own row (net and store know nothing of each other) nor of a higher one.
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("errors", "exits"),  # the ground: what went wrong, how a command ends
    ("core",),  # pure: protocols, parsers, rules
    ("logs",),  # log lines a remote party can cause, bounded
    ("net", "store"),  # the edges (DNS, HTTPS, TLS, postconf) and the stores: plain values in, no config
    ("config",),  # the configuration's values, read through the schema
    ("resolver",),  # what Postfix is answered, and the cache kept right
    ("servers",),  # socketmap, control, publisher, report intake, dashboard, metrics
    ("daemon",),  # the one composition root
    ("commands",),  # the command line's commands
    ("cli",),  # the command line
    ("__main__",),  # python -m mtasts
)

# Imports inside functions, each with its reason: a module named here (or below it) may be
# imported where it is needed, and nothing else.
LAZY = {
    "aiohttp": "optional: a resolver-only daemon never loads it",
    "prometheus_client": "optional (mtasts[metrics])",
    "redis": "optional (mtasts[redis])",
    "mtasts.servers.publisher": "imports aiohttp: loaded only where a publisher runs",
    "mtasts.servers.dashboard": "imports aiohttp: loaded only where the dashboard runs",
    "mtasts.servers.metrics": "imports aiohttp and prometheus_client: loaded only with [metrics] listen",
    "mtasts.store.shared": 'imports redis: loaded only with [cache] backend = "redis"',
    "mtasts.commands": "cli.py loads only the command it runs (reports ingest, per mail, stays light)",
    "mtasts.daemon": "cli.py: `serve` only",
}

CORE_FORBIDDEN = {
    "asyncio",
    "aiohttp",
    "dns",
    "sqlite3",
    "socket",
    "time",
    "datetime",
    "random",
    "os",
    "ssl",
    "cachetools",
    "redis",
    "subprocess",
    "threading",
    "logging",
    "selectors",
    "pathlib",
    "io",
    "shutil",
    "tempfile",
    "signal",
    "glob",
    "urllib",
    "http",
    "multiprocessing",
    "concurrent",
}
CORE_FORBIDDEN_CALLS = {"open", "input", "exec", "eval", "__import__", "breakpoint"}


def room_of(module: str) -> Optional[str]:
    """The room of an mtasts module ("mtasts.net.dns" -> "net"), None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def rank(room: str) -> int:
    for index, rooms in enumerate(LAYERS):
        if room in rooms:
            return index
    raise AssertionError(f"room {room!r} is in no layer of LAYERS: add it where it belongs")


def module_name(path: pathlib.Path, top: pathlib.Path = PACKAGE_DIR) -> str:
    relative = path.relative_to(top.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: pathlib.Path, package: str) -> List[Tuple[int, str, bool]]:
    """(line, absolute module, inside a function?) for every import in *path*."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    absolute = ".".join(base + ([child.module] if child.module else []))
                else:
                    absolute = child.module or ""
                names = [f"{absolute}.{a.name}" for a in child.names] if not child.module else [absolute]
                found.extend((child.lineno, name, in_function) for name in names)
            visit(child, local)

    visit(tree, False)
    return found


def problems(path: pathlib.Path, module: str) -> List[str]:
    """Each import of *path* (the module *module*) that breaks the plan, as "line: what"."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    room = room_of(module)
    found = []
    for line, imported, in_function in imports(path, package):
        top = imported.split(".")[0]
        if in_function and not any(imported == lazy or imported.startswith(lazy + ".") for lazy in LAZY):
            found.append(f"{line}: imports {imported} inside a function (LAZY says when that is allowed)")
        if room == "core" and top in CORE_FORBIDDEN:
            found.append(f"{line}: imports {imported} (the core does no I/O and reads no clock)")
        if top != "mtasts" or room is None:
            continue
        target = room_of(imported)
        if target is None or target == room:
            continue  # the package's own face (its version), or the same room
        if room == "core" and target != "errors":
            found.append(f"{line}: imports {imported} (outside the core)")
        elif rank(target) >= rank(room):
            found.append(f"{line}: imports {imported}, which is not below {room}")
    if room == "core":
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CORE_FORBIDDEN_CALLS:
                found.append(f"{node.lineno}: calls {node.func.id}()")
    return found


def all_modules():
    return sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_room_has_a_layer():
    rooms = {room_of(module_name(p)) for p in all_modules()} - {None}
    for room in rooms:
        rank(room)


def test_every_import_follows_the_plan():
    bad = [f"{module_name(p)}:{problem}" for p in all_modules() for problem in problems(p, module_name(p))]
    assert bad == []


def test_the_core_modules_exist():
    names = {p.stem for p in (PACKAGE_DIR / "core").glob("*.py")}
    assert {
        "netstring",
        "socketmap",
        "txtrecord",
        "policy",
        "hostname",
        "nexthop",
        "reply",
        "freshness",
        "postfixcaps",
        "dane",
        "answer",
    } <= names


@pytest.mark.parametrize(
    "module,planted,expected",
    [
        ("mtasts.core.x", "import time\n", "1: imports time (the core does no I/O and reads no clock)"),
        ("mtasts.core.x", "from mtasts.store import sqlite\n", "1: imports mtasts.store (outside the core)"),
        ("mtasts.core.x", "from ..net import dns\n", "1: imports mtasts.net (outside the core)"),
        ("mtasts.core.x", "from . import policy\n", None),
        ("mtasts.core.x", "data = open('/etc/passwd').read()\n", "1: calls open()"),
        (
            "mtasts.net.x",
            "from mtasts.store.sqlite import SqliteStore\n",
            "1: imports mtasts.store.sqlite, which is not below net",
        ),
        ("mtasts.net.x", "from mtasts.config import Config\n", "1: imports mtasts.config, which is not below net"),
        (
            "mtasts.store.x",
            "from mtasts.resolver import PolicyResolver\n",
            "1: imports mtasts.resolver, which is not below store",
        ),
        (
            "mtasts.daemon.x",
            "from mtasts.commands.cache import ask\n",
            "1: imports mtasts.commands.cache, which is not below daemon",
        ),
        ("mtasts.servers.x", "from mtasts.resolver import PolicyResolver\n", None),
        (
            "mtasts.servers.x",
            "def f():\n    from mtasts.resolver import PolicyResolver\n",
            "2: imports mtasts.resolver inside a function (LAZY says when that is allowed)",
        ),
        ("mtasts.daemon.x", "def f():\n    from mtasts.servers.publisher import PolicyPublisher\n", None),
        ("mtasts.resolver.x", "from .answers import Answers\n", None),
    ],
)
def test_the_checker_catches_a_planted_import(tmp_path, module, planted, expected):
    fake = tmp_path / "x.py"
    fake.write_text(planted)
    found = problems(fake, module)
    assert found == ([] if expected is None else [expected])
