"""The EL7 RPM: built by packaging/rpm/build.sh, installed into a scratch root, and run.

The installed /usr/bin/mtasts wrapper is run for real: in a private mount namespace the
real Python 3.8.18 is bind-mounted where Software Collections puts rh-python38
(/opt/rh/rh-python38/root/usr) and the scratch root's /opt/mtasts on /opt/mtasts, so the
vendored aiohttp/dnspython (manylinux2014, cp38) serve a live ``mtasts query``.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
RPM_DIR = ROOT / "packaging" / "rpm"
PY38_PREFIX = pathlib.Path("/root/.pyenv/versions/3.8.18")


def _readable(path: pathlib.Path) -> bool:
    """exists(), without the PermissionError an ordinary user gets for /root (at collection)."""
    try:
        return path.exists() and os.access(path, os.X_OK)
    except OSError:
        return False


SCL_PREFIX = "/opt/rh/rh-python38/root/usr"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not shutil.which("rpmbuild") or not shutil.which("rpmlint"),
        reason="rpm and rpmlint are not installed (.ci/run installs them)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="the scratch install and the mount namespace need root"),
    pytest.mark.skipif(
        not _readable(PY38_PREFIX / "bin" / "python3.8"), reason="no Python 3.8.18 here (or not readable)"
    ),
]

sys.path.insert(0, str(RPM_DIR))
import gates  # noqa: E402


def build(target, out):
    env = dict(os.environ, MTASTS_RPM_OUT=str(out), HOSTPY=sys.executable)
    # Downloads the locked wheels once into dist/wheels-TARGET (kept between runs), then builds.
    built = subprocess.run(
        ["bash", str(RPM_DIR / "build.sh"), target], env=env, capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stdout + built.stderr
    rpms = list(out.glob(f"x86_64/mtasts-*.{target}.x86_64.rpm"))
    assert len(rpms) == 1, built.stdout
    return rpms[0]


def install(package, root):
    """rpm -i into a scratch root; owners resolve in its own passwd/group, as %pre made them."""
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nmtasts:x:981:981::/var/lib/mtasts:/sbin/nologin\n")
    (root / "etc" / "group").write_text("root:x:0:\nmtasts:x:981:\n")
    done = subprocess.run(
        ["rpm", "-i", "--root", str(root), "--dbpath", "/var/lib/rpm", "--nodeps", "--noscripts", str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return build("el7", tmp_path_factory.mktemp("rpm"))


@pytest.fixture(scope="module")
def installed(package, tmp_path_factory):
    return install(package, tmp_path_factory.mktemp("scratch-root"))


def rpm_query(package, fmt):
    return subprocess.run(["rpm", "-qp", "--qf", fmt, str(package)], capture_output=True, text=True, check=True).stdout


def test_package_metadata(package):
    assert package.name == "mtasts-0.1.0-1.el7.x86_64.rpm"
    assert rpm_query(package, "%{ARCH} %{PAYLOADCOMPRESSOR}") == "x86_64 xz"
    requires = rpm_query(package, "[%{REQUIRENAME}\n]")
    assert "rh-python38-python" in requires
    assert "GLIBC_2.14" in requires  # the newest glibc the vendored extensions need
    assert "python(abi)" not in requires  # nothing on the host's Python
    provides = rpm_query(package, "[%{PROVIDENAME}\n]").split()
    assert not [p for p in provides if ".so" in p], provides  # vendored objects stay private
    scripts = subprocess.run(
        ["rpm", "-qp", "--scripts", str(package)], capture_output=True, text=True, check=True
    ).stdout
    assert gates.scriptlet_problems(scripts) == []
    assert "useradd -r -g mtasts -d /var/lib/mtasts -s /sbin/nologin" in scripts
    assert "systemctl preset mtasts.service" in scripts and "systemctl try-restart" in scripts


def test_files_owners_and_modes(package, installed):
    listed = rpm_query(
        package, "[%{FILENAMES}\t%{FILEUSERNAME}:%{FILEGROUPNAME}\t%{FILEMODES:perms}\t%{FILEFLAGS:fflags}\n]"
    )
    files = {line.split("\t")[0]: line.split("\t")[1:] for line in listed.splitlines()}
    assert files["/etc/mtasts"][:2] == ["root:mtasts", "drwxr-x---"]
    assert files["/etc/mtasts/mtasts.toml"] == ["root:mtasts", "-rw-r-----", "cn"]  # %config(noreplace)
    assert files["/var/lib/mtasts"][:2] == ["mtasts:mtasts", "drwxr-x---"]
    assert files["/usr/bin/mtasts"][:2] == ["root:root", "-rwxr-xr-x"]
    for unit in (
        "mtasts.service",
        "mtasts.socket",
        "mtasts-publish.socket",
        "mtasts-publish.service",
        "mtasts-reports-digest.service",
        "mtasts-reports-digest.timer",
    ):
        assert files[f"/usr/lib/systemd/system/{unit}"][:2] == ["root:root", "-rw-r--r--"]
        assert (installed / f"usr/lib/systemd/system/{unit}").read_text() == (ROOT / "systemd" / unit).read_text()
    assert "/opt/mtasts/bin/mtasts" in files
    assert "/opt/mtasts/lib/mtasts/core/policy.py" in files
    assert "/opt/mtasts/lib/mtasts/core/__pycache__/policy.cpython-38.pyc" in files  # compiled for 3.8
    assert "/usr/share/licenses/mtasts-0.1.0/LICENSE" in files
    nothing_else = [
        f for f in files if not f.startswith(("/opt/mtasts", "/usr/share/doc/mtasts", "/usr/share/licenses"))
    ]
    assert sorted(nothing_else) == sorted(
        [
            "/etc/mtasts",
            "/etc/mtasts/mtasts.toml",
            "/usr/bin/mtasts",
            "/var/lib/mtasts",
            "/usr/lib/systemd/system/mtasts.service",
            "/usr/lib/systemd/system/mtasts.socket",
            "/usr/lib/systemd/system/mtasts-publish.socket",
            "/usr/lib/systemd/system/mtasts-publish.service",
            "/usr/lib/systemd/system/mtasts-reports-digest.service",
            "/usr/lib/systemd/system/mtasts-reports-digest.timer",
            "/usr/share/mtasts",
            "/usr/share/mtasts/monitoring",
            "/usr/share/mtasts/monitoring/mtasts-alerts.yml",
            "/usr/share/mtasts/monitoring/grafana-dashboard.json",
        ]
    )
    # On disk in the scratch root, with the owner %pre would have made.
    for path, uid, mode in (
        ("etc/mtasts", 0, 0o750),
        ("etc/mtasts/mtasts.toml", 0, 0o640),
        ("var/lib/mtasts", 981, 0o750),
        ("usr/bin/mtasts", 0, 0o755),
    ):
        st = (installed / path).stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, mode), path
    assert (installed / "etc/mtasts/mtasts.toml").stat().st_gid == 981


def test_vendored_tree_is_cp38_manylinux2014(installed):
    lib = installed / "opt/mtasts/lib"
    objects = sorted(str(p) for p in lib.rglob("*.so"))
    assert objects and all(".cpython-38-x86_64-linux-gnu.so" in p for p in objects), objects
    assert gates.glibc_problems(objects) == []
    pins = [
        line.split("==")[0].lower().replace("-", "_")
        for line in (RPM_DIR / "lock-el7.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    ]
    dist_infos = {p.name.split("-")[0].lower() for p in lib.glob("*.dist-info")}
    assert dist_infos == set(pins)
    assert not (lib / "bin").exists()


def test_shipped_config_suits_el7(installed):
    text = (installed / "etc/mtasts/mtasts.toml").read_text()
    assert 'listen = ["inet:127.0.0.1:8461"]' in text  # TCP: no SELinux module needed
    sys.path.insert(0, str(ROOT / "src"))
    from mtasts.config import load_config
    from mtasts.core.policy import parse_policy
    from mtasts.core.policyanswer import read_answer
    from mtasts.core.postfixcaps import PostfixInfo, fit_profiles
    from mtasts.core.reply import tls_policy_reply

    config = load_config(str(installed / "etc/mtasts/mtasts.toml"))
    assert config.cache.path == "/var/lib/mtasts/cache.sqlite3"
    # Stock CentOS 7 as postconf reports it: Postfix 2.10.1, no smtp_dns_support_level.
    maps, default, warnings = fit_profiles(config.maps, config.default_profile, PostfixInfo((2, 10, 1)))
    assert warnings == []
    policy = parse_policy(b"version: STSv1\r\nmode: enforce\r\nmx: mx.example.com\r\nmax_age: 86400\r\n")
    for profile in list(maps.values()) + [default]:
        assert not (profile.sni or profile.dane or profile.tlsrpt)
        level, attributes = read_answer(tls_policy_reply("example.com", policy, profile)[3:].decode())
        assert level == "secure" and [n for n, _v in attributes] == ["match"]  # all Postfix 2.10 knows
    # EL8/EL9 (Postfix 3.5) get servername= from the same file.
    maps, _default, _ = fit_profiles(config.maps, config.default_profile, PostfixInfo((3, 5, 9)))
    assert maps["postfix"].sni and not maps["postfix"].dane


def run_installed(installed, *args, timeout=60):
    """Run the scratch root's /usr/bin/mtasts with the real Python 3.8 at the SCL path."""
    script = (
        "set -e; mount -t tmpfs mtasts-test /opt; mkdir -p /opt/mtasts " + SCL_PREFIX + ";"
        f" mount --bind {PY38_PREFIX} {SCL_PREFIX}; mount --bind {installed}/opt/mtasts /opt/mtasts;"
        f' exec {installed}/usr/bin/mtasts "$@"'
    )
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_installed_wrapper_runs_on_python_3_8(installed):
    wrapper = (installed / "usr/bin/mtasts").read_text()
    assert f"exec {SCL_PREFIX}/bin/python3.8 -I -S /opt/mtasts/bin/mtasts" in wrapper
    assert f"LD_LIBRARY_PATH={SCL_PREFIX}/lib64" in wrapper
    version = run_installed(installed, "--version")
    assert (version.returncode, version.stdout.strip()) == (0, "mtasts 0.1.0"), version.stderr
    # -I -S: the interpreter's own site-packages are out of reach, only /opt/mtasts/lib counts.
    isolated = subprocess.run(
        [str(PY38_PREFIX / "bin/python3.8"), "-I", "-S", "-c", "import aiohttp"], capture_output=True, text=True
    )
    assert isolated.returncode != 0


def query_config(world, tmp_path, postfix_version):
    ca = tmp_path / "ca.pem"
    world.host.ca.cert_pem.write_to_path(str(ca))
    config = tmp_path / "mtasts.toml"
    # The Postfix of the platform, as its postconf would report it.
    config.write_text(
        f'[resolver]\nnameservers = ["{world.dns.address}"]\n[fetch]\nca_file = "{ca}"\n'
        f'[cache]\npath = "{tmp_path}/cache.sqlite3"\n[postfix]\nversion = "{postfix_version}"\n'
    )
    return config


def test_installed_query_against_test_dns_and_https(installed, world, tmp_path):
    d = world.new_domain()
    world.publish(d)
    result = run_installed(installed, "query", "--config", str(query_config(world, tmp_path, "2.10.1")), "--json", d)
    assert result.returncode == 0, result.stdout + result.stderr
    import json

    report = json.loads(result.stdout)
    assert report["fetch"]["mode"] == "enforce"
    assert report["postfix"] == "Postfix 2.10.1"
    assert report["answer"] == f"OK secure match=mx1.{d}:.backup.{d}"  # CentOS 7's Postfix: no servername=


def test_build_fails_on_a_wheel_for_another_python(package, tmp_path):
    wheels = tmp_path / "wheels"
    shutil.copytree(ROOT / "dist" / "wheels-el7", wheels)
    yarl = next(wheels.glob("yarl-*.whl"))
    yarl.rename(wheels / yarl.name.replace("cp38-cp38", "cp39-cp39"))
    env = dict(os.environ, MTASTS_RPM_OUT=str(tmp_path / "out"), MTASTS_WHEELS=str(wheels), HOSTPY=sys.executable)
    built = subprocess.run(
        ["bash", str(RPM_DIR / "build.sh"), "el7", "--offline"], env=env, capture_output=True, text=True, timeout=300
    )
    assert built.returncode != 0
    assert "gate wheels: yarl-1.15.2-cp39-cp39" in built.stderr
    assert not (tmp_path / "out").exists()


def test_rpmlint_errors_without_the_committed_justifications(package, tmp_path):
    empty = tmp_path / "empty.rpmlintrc"
    empty.write_text("")
    strict = subprocess.run(["rpmlint", "-r", str(empty), str(package)], capture_output=True, text=True)
    assert strict.returncode != 0 and "E: dir-or-file-in-opt" in strict.stdout
    justified = subprocess.run(
        ["rpmlint", "-r", str(RPM_DIR / "mtasts.rpmlintrc"), str(package)], capture_output=True, text=True
    )
    assert justified.returncode == 0, justified.stdout
    assert " 0 errors" in justified.stdout


try:
    PY39 = next(iter(sorted(pathlib.Path("/root/.pyenv/versions").glob("3.9.*/bin/python3.9"))), None)
except OSError:  # /root is out of an ordinary user's reach
    PY39 = None


@pytest.mark.skipif(PY39 is None, reason="no Python 3.9 here")
def test_el9_variant_runs_on_python_3_9(world, tmp_path_factory, tmp_path):
    package = build("el9", tmp_path_factory.mktemp("rpm-el9"))
    assert package.name == "mtasts-0.1.0-1.el9.x86_64.rpm"
    assert "/usr/bin/python3.9" in rpm_query(package, "[%{REQUIRENAME}\n]").split("\n")
    root = install(package, tmp_path_factory.mktemp("scratch-root-el9"))
    assert "exec /usr/bin/python3.9 -I -S /opt/mtasts/bin/mtasts" in (root / "usr/bin/mtasts").read_text()
    assert "LD_LIBRARY_PATH" not in (root / "usr/bin/mtasts").read_text()
    assert (root / "etc/mtasts/mtasts.toml").read_text() == (ROOT / "packaging/rpm/mtasts.toml").read_text()
    objects = [str(p) for p in (root / "opt/mtasts/lib").rglob("*.so")]
    assert objects and all(".cpython-39-x86_64-linux-gnu.so" in p for p in objects)
    assert gates.glibc_problems(objects) == []
    d = world.new_domain()
    world.publish(d)
    result = subprocess.run(
        [
            str(PY39),
            "-I",
            "-S",
            str(root / "opt/mtasts/bin/mtasts"),
            "query",
            "--config",
            str(query_config(world, tmp_path, "3.5.9")),
            d,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"OK secure match=mx1.{d}:.backup.{d} servername=hostname" in result.stdout
