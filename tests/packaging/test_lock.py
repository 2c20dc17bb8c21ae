"""The EL7 and EL9 locks stay consistent with pyproject's dependencies and ci/requirements-el7.txt."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pins(path):
    out = {}
    for line in (ROOT / path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[name.lower().replace("_", "-")] = version
    return out


def test_lock_pins_every_runtime_dependency_and_the_top_level_versions():
    lock = pins("packaging/rpm/lock-el7.txt")
    top = pins("ci/requirements-el7.txt")
    for name, version in top.items():
        assert lock.get(name) == version, name
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    for dep in re.findall(r'"([A-Za-z0-9_.-]+)', deps):
        assert dep.lower() in lock, f"{dep} is a dependency but not in the EL7 lock"
    assert "async-timeout" in lock  # needed by aiohttp on Python < 3.11, easy to lose
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in lock.values())


def test_el9_lock_pins_every_runtime_dependency():
    lock = pins("packaging/rpm/lock-el9.txt")
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"dependencies = \[(.*?)\]", pyproject, re.S).group(1)
    for dep in re.findall(r'"([A-Za-z0-9_.-]+)', deps):
        assert dep.lower() in lock, f"{dep} is a dependency but not in the EL9 lock"
    assert "async-timeout" in lock and "tomli" in lock  # Python 3.9 needs both
    assert all(re.fullmatch(r"\d+(\.\d+)*", v) for v in lock.values())
