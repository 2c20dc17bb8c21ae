"""Postfix's own socketmap client (postmap -q) against the daemon, over TCP and unix."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.policies import policy_text

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("postmap"), reason="Postfix is not installed (.ci/run installs it)"),
]


@pytest.fixture
def postfix_dir(tmp_path):
    # Debian's "No configuration" install has no main.cf: give postmap its own.
    d = tmp_path / "postfix"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\n")
    return str(d)


def postmap(postfix_dir, table, key, stdin=None):
    return subprocess.run(
        ["postmap", "-c", postfix_dir, "-q", key, table], input=stdin, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("transport", ["inet", "unix"])
def test_postmap_sees_the_same_answers(world, daemon, postfix_dir, transport):
    table = (
        f"socketmap:inet:127.0.0.1:{daemon.port}:postfix"
        if transport == "inet"
        else f"socketmap:unix:{daemon.unix}:postfix"
    )
    enforce, testing, none = world.new_domain(), world.new_domain(), world.new_domain()
    world.publish(enforce)
    world.publish(testing, policy_text(mode="testing", domain=testing))
    found = postmap(postfix_dir, table, enforce)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == f"secure match=mx1.{enforce}:.backup.{enforce} servername=hostname"
    assert "OK " + found.stdout.strip() == daemon.query(enforce)
    for key in (testing, none, "." + enforce, "[192.0.2.1]"):
        result = postmap(postfix_dir, table, key)
        assert result.returncode == 1 and result.stdout == "", (key, result.stderr)
        assert daemon.query(key) == "NOTFOUND "
    assert "warning" not in found.stderr and "fatal" not in found.stderr


def test_postmap_batch_and_profiles(world, daemon, postfix_dir):
    d = world.new_domain()
    world.publish(d)
    batch = postmap(
        postfix_dir, f"socketmap:inet:127.0.0.1:{daemon.port}:oldpostfix", "-", stdin=f"{d}\n.{d}\n[{d}]:587\n"
    )
    assert batch.returncode == 0, batch.stderr
    assert batch.stdout.splitlines() == [
        f"{d}\tsecure match=mx1.{d}:.backup.{d}",
        f"[{d}]:587\tsecure match=mx1.{d}:.backup.{d}",
    ]


def test_postmap_with_daemon_stopped_is_a_temporary_error(daemon, postfix_dir):
    """Postfix defers when the map is unreachable: postmap reports a lookup error, not 'not found'."""
    daemon.stop()
    result = postmap(postfix_dir, f"socketmap:inet:127.0.0.1:{daemon.port}:postfix", "example.com")
    # postmap exits 1 for "not found" too; the lookup error is what smtp(8) turns into a deferral.
    assert result.stdout == "" and "lookup error" in result.stderr
