"""The RPM build's gates (packaging/rpm/gates.py) refuse what EL7 cannot run."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest

RPM_DIR = pathlib.Path(__file__).resolve().parents[2] / "packaging" / "rpm"
sys.path.insert(0, str(RPM_DIR))
import gates  # noqa: E402


def test_wheels_for_the_target_abi_pass():
    assert (
        gates.wheel_problems(
            "cp38",
            [
                "aiohttp-3.10.11-cp38-cp38-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "multidict-6.1.0-cp38-cp38-manylinux_2_5_x86_64.manylinux1_x86_64.whl",
                "attrs-25.3.0-py3-none-any.whl",
                "six-1.16.0-py2.py3-none-any.whl",
                "cryptography-43.0.0-cp37-abi3-manylinux2014_x86_64.whl",
            ],
        )
        == []
    )


@pytest.mark.parametrize(
    "wheel,why",
    [
        ("yarl-1.15.2-cp39-cp39-manylinux2014_x86_64.whl", "not cp38 or abi3"),
        ("x-1.0-cp311-abi3-manylinux2014_x86_64.whl", "not cp38 or abi3"),  # abi3 from 3.11 on
        ("x-1.0-cp38-cp38-manylinux_2_28_x86_64.whl", "glibc <= 2.17"),
        ("x-1.0-cp38-cp38-musllinux_1_1_x86_64.whl", "glibc <= 2.17"),
        ("x-1.0-cp38-cp38-manylinux2014_aarch64.whl", "glibc <= 2.17"),
        ("x-1.0-py2-none-any.whl.zip", "not a wheel"),
    ],
)
def test_wheels_for_anything_else_fail(wheel, why):
    (problem,) = gates.wheel_problems("cp38", [wheel])
    assert why in problem


def test_glibc_version_read_from_objdump():
    text = (
        "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) free\n"
        "0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.14)  memcpy\n"
    )
    assert gates.glibc_needed(text) == (2, 14)
    assert gates.glibc_needed("no versions") == (0, 0)


@pytest.mark.skipif(not shutil.which("gcc") or not shutil.which("objdump"), reason="needs gcc and objdump")
def test_glibc_gate_refuses_an_object_built_against_this_machines_glibc(tmp_path):
    source = tmp_path / "new.c"
    source.write_text("#include <sys/random.h>\nint f(void *b) { return (int)getrandom(b, 1, 0); }\n")
    so = tmp_path / "new.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), str(source)], check=True)
    (problem,) = gates.glibc_problems([str(so)])
    assert "needs GLIBC_2.25, EL7 has 2.17" in problem


def test_scriptlet_gate_finds_unexpanded_macros():
    assert gates.scriptlet_problems("if [ $1 -eq 1 ] ; then\n  systemctl preset a >/dev/null 2>&1 || :\nfi\n") == []
    assert gates.scriptlet_problems("postinstall scriptlet (using /bin/sh):\n%systemd_post mtasts.service\n") == [
        "%systemd_post mtasts.service"
    ]
    assert gates.scriptlet_problems("useradd -d %{_sharedstatedir}/mtasts x") != []


def test_gates_command_line_exit_status(tmp_path):
    good = subprocess.run([sys.executable, str(RPM_DIR / "gates.py"), "wheels", "cp38", "a-1-py3-none-any.whl"])
    bad = subprocess.run(
        [sys.executable, str(RPM_DIR / "gates.py"), "wheels", "cp38", "a-1-cp39-cp39-manylinux2014_x86_64.whl"],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and bad.returncode == 1
    assert "gate wheels: a-1-cp39" in bad.stderr
