"""Every Postfix configuration the docs tell an admin to paste survives Postfix's own reading
of it (postconf has no trailing comments: a "# ..." after a value becomes part of it)."""

import pathlib
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
POSTCONF = shutil.which("postconf") or ("/usr/sbin/postconf" if pathlib.Path("/usr/sbin/postconf").exists() else None)
pytestmark = pytest.mark.skipif(POSTCONF is None, reason="Postfix is not installed (.ci/run installs it)")


def assignments(text):
    """(name, value) of every non-comment ``name = value`` line, as written."""
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def read_back(directory, names):
    done = subprocess.run([POSTCONF, "-c", str(directory), *names], capture_output=True, text=True, check=True)
    return dict(line.split(" = ", 1) if " = " in line else (line.rstrip(" ="), "") for line in done.stdout.splitlines())


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "main.cf").write_text("compatibility_level = 3.6\n")
    return tmp_path


def test_readme_main_cf_block_pasted_into_main_cf(config_dir):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("In `main.cf`:", 1)[1].split("```", 2)[1]
    pasted = assignments(block)
    assert pasted and all("#" not in value for _name, value in pasted)
    with open(config_dir / "main.cf", "a") as f:
        f.write(block)
    assert read_back(config_dir, [n for n, _v in pasted]) == dict(pasted)


def test_readme_postconf_e_command(config_dir):
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^postconf -e .*?(?<!\\)\n", readme, re.M | re.S).group(0).replace("\\\n", " ")
    args = shlex.split(command)[2:]
    subprocess.run([POSTCONF, "-c", str(config_dir), "-e", *args], check=True)
    expected = dict(a.split(" = ", 1) for a in args)
    assert read_back(config_dir, list(expected)) == expected


def test_main_cf_example_appended_to_main_cf(config_dir):
    example = (ROOT / "postfix" / "main.cf.example").read_text()
    pasted = assignments(example)
    with open(config_dir / "main.cf", "a") as f:
        f.write(example)
    assert read_back(config_dir, [n for n, _v in pasted]) == dict(pasted)
    assert all("#" not in v for v in read_back(config_dir, [n for n, _v in pasted]).values())
