"""Release gates for the RPM build (build.sh runs them; tests/test_rpm.py shows each can fail).

    python3 gates.py wheels ABI WHEEL...     every vendored wheel is for ABI (e.g. cp38) or abi3/pure
    python3 gates.py glibc FILE...           no shared object needs a glibc symbol newer than 2.17
    python3 gates.py scriptlets              stdin (rpm -qp --scripts) holds no unexpanded % macro
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Iterable, List, Tuple

# EL7's glibc; manylinux2014 promises no more.
MAX_GLIBC = (2, 17)
_MANYLINUX_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_GLIBC_SYMBOL = re.compile(r"\bGLIBC_(\d+)\.(\d+)(?:\.\d+)?\b")


def wheel_problems(abi: str, filenames: Iterable[str]) -> List[str]:
    """Why each wheel cannot run on CPython *abi* (``cp38``) on x86_64 glibc <= 2.17."""
    problems = []
    for filename in filenames:
        name = filename.rsplit("/", 1)[-1]
        parts = name[:-4].split("-") if name.endswith(".whl") else []
        if len(parts) not in (5, 6):
            problems.append(f"{name}: not a wheel file name")
            continue
        pythons, abis, platforms = (set(p.split(".")) for p in parts[-3:])
        if abis == {"none"} and platforms == {"any"}:
            if not pythons & {"py3", "py2.py3", "py2", f"py{abi[2:]}"}:
                problems.append(f"{name}: pure wheel for {'.'.join(sorted(pythons))}, not Python 3")
            continue
        if abi in abis and abi in pythons:
            pass
        elif "abi3" in abis and any(_cpython(p) and _cpython(p) <= _cpython(abi) for p in pythons):
            pass  # cp36-abi3 runs on every CPython >= 3.6
        else:
            problems.append(f"{name}: built for {'.'.join(sorted(pythons))}-{'.'.join(sorted(abis))}, not {abi} or abi3")
            continue
        if not any((_platform_glibc(p) or (99, 0)) <= MAX_GLIBC for p in platforms):
            problems.append(f"{name}: platform {'.'.join(sorted(platforms))} is not x86_64 with glibc <= 2.17")
    return problems


def _cpython(tag: str) -> int:
    """3x minor version of a cp3x tag (cp38 -> 8), 0 otherwise."""
    return int(tag[3:]) if tag.startswith("cp3") and tag[3:].isdigit() else 0


def _platform_glibc(platform: str):
    if not platform.endswith("_x86_64"):
        return None
    base = platform[: -len("_x86_64")]
    if base in _MANYLINUX_LEGACY:
        return _MANYLINUX_LEGACY[base]
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)", base)
    return (int(match.group(1)), int(match.group(2))) if match else None


def glibc_needed(objdump_text: str) -> Tuple[int, int]:
    """The newest GLIBC_x.y symbol version in ``objdump -T`` output, (0, 0) if none."""
    versions = [(int(a), int(b)) for a, b in _GLIBC_SYMBOL.findall(objdump_text)]
    return max(versions, default=(0, 0))


def glibc_problems(paths: Iterable[str]) -> List[str]:
    problems = []
    for path in paths:
        out = subprocess.run(["objdump", "-T", path], capture_output=True, text=True, check=True).stdout
        needed = glibc_needed(out)
        if needed > MAX_GLIBC:
            problems.append(f"{path}: needs GLIBC_{needed[0]}.{needed[1]}, EL7 has 2.17")
    return problems


def scriptlet_problems(scripts: str) -> List[str]:
    """Lines of ``rpm -qp --scripts`` that still hold a macro: they would run as shell text."""
    return [line.strip() for line in scripts.splitlines() if re.search(r"%[{(\w]", line)]


def main(argv: List[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "wheels":
        problems = wheel_problems(args[0], args[1:])
    elif command == "glibc":
        problems = glibc_problems(args)
    elif command == "scriptlets":
        problems = scriptlet_problems(sys.stdin.read())
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for problem in problems:
        print(f"gate {command}: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
