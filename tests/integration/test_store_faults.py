"""A bad day for the cache store: damaged pages, a full disk, a file the daemon cannot write.

Answers never depend on the store: every lookup is answered (no dropped connection, no
TEMP), failures are logged and counted, and the memory tier carries on.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from mtasts.core import freshness
from mtasts.core.policy import parse_policy
from mtasts.store.sqlite import SqliteStore
from tests.support.policies import policy_text
from tests.support.socketmap import netstring, read_netstring

pytestmark = pytest.mark.integration

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def seed(path, count, now=None):
    """*count* domains with a valid enforce policy, as the daemon would have stored them."""
    now = now or time.time()
    store = SqliteStore(str(path))
    for i in range(count):
        domain = f"seeded{i}.example"
        policy = parse_policy(policy_text(domain=domain, mx=("mx1.{d}",)))
        store.put(freshness.learned(None, domain, policy, "1", now, 0.5))
    store.close()
    return [f"seeded{i}.example" for i in range(count)]


def damage(path, offset_fraction=0.5, size=64 * 1024):
    with open(path, "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.seek(int(f.tell() * offset_fraction))
        f.write(os.urandom(size))


def ask_all(daemon, keys):
    """Pipeline every key on one connection; every request must get its reply."""
    s = daemon.connect()
    s.sendall(b"".join(netstring(f"postfix {k}".encode()) for k in keys))
    return [read_netstring(s).decode() for _ in keys]


def stats(daemon):
    return json.loads(daemon.cli("cache", "stats", "--json").stdout)["stats"]


def test_damaged_pages_found_at_start_move_the_file_aside(make_daemon):
    d = make_daemon(start=False)
    domains = seed(d.cache, 600)
    damage(d.cache)
    d.start()
    assert "is damaged (quick_check:" in d.log() and os.path.exists(d.cache + ".corrupt")
    answers = ask_all(d, domains[:50])
    assert all(a == "NOTFOUND " for a in answers)  # relearned from DNS: no policy there now
    assert "Traceback" not in d.log()


def test_pages_damaged_while_running_are_misses_not_dropped_connections(make_daemon, world):
    d = make_daemon(start=False)
    domains = seed(d.cache, 600)
    d.start()
    damage(d.cache, 0.4, 128 * 1024)  # under the running daemon
    # Another writer commits: the daemon's connection drops its page cache (WAL) and reads
    # the damaged pages from the file, as it would after a disk fault meanwhile.
    import sqlite3

    poke = sqlite3.connect(d.cache)
    poke.execute("INSERT OR REPLACE INTO meta VALUES ('poke', '1')")
    poke.commit()
    poke.close()
    answers = ask_all(d, domains + ["[192.0.2.1]"])
    assert len(answers) == 601 and answers[-1] == "NOTFOUND "  # the request after them too
    assert all(a.startswith("OK secure match=mx1.seeded") or a == "NOTFOUND " for a in answers[:-1])
    s = stats(d)
    assert s["internal_errors"] == 0
    assert s["store_errors"] > 0, "the damage hit no page that a lookup read"
    log = d.log()
    assert log.count("cache store read of") == 1  # one ERROR per outage
    listed = d.cli("cache", "list", "--json")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr
    json.loads(listed.stdout)
    purged = d.cli("cache", "purge", domains[0])
    assert purged.returncode in (0, 1) and "Traceback" not in purged.stderr


@root_only
def test_a_full_disk_does_not_change_any_answer(make_daemon, world, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(small)], check=True)
    try:
        d = make_daemon(start=False)
        d.config.write_text(d.config.read_text().replace(d.cache, str(small / "cache.sqlite3")))
        d.start()
        with open(small / "filler", "wb") as f:  # leave the cache no room to grow
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        names = [world.new_domain("full") for _ in range(100)]
        for name in names:
            world.publish(
                name, body=policy_text(domain=name, mx=("mx1.{d}",) + tuple(f"mx{i}.{{d}}" for i in range(2, 30)))
            )
        answers = ask_all(d, names)
        assert all(a.startswith("OK secure match=mx1.") for a in answers), [a for a in answers if "secure" not in a][:3]
        again = ask_all(d, names)  # from memory, no second fetch
        assert again == answers and sum(world.fetches(n) for n in names) == 100
        assert stats(d)["store_errors"] > 0
        assert d.log().count("ERROR cache store write of") == 1
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)])


@root_only
def test_a_cache_file_the_daemon_cannot_write_runs_in_memory_with_an_error(make_daemon, world, tmp_path):
    # As a root-created file is for the mtasts user: here the file alone is mounted
    # read-only (which refuses writes even to root); its directory stays writable.
    d = make_daemon(start=False)
    seed(d.cache, 3)
    subprocess.run(["mount", "--bind", d.cache, d.cache], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", d.cache], check=True)
    try:
        started = time.monotonic()
        d.start()
        name = world.new_domain("ro")
        world.publish(name)
        assert d.query(name).startswith("OK secure match=")
        assert d.query("seeded0.example") == "NOTFOUND "  # the file is not read: memory only
        assert time.monotonic() - started < 10  # no hang in SQLite's retries
        log = d.log()
        assert f"ERROR {d.cache}: on a read-only file system" in log, log
        assert "running with the memory cache only" in log
    finally:
        d.stop()
        subprocess.run(["umount", "-l", d.cache])


@root_only
def test_a_read_only_cache_file_system_at_start_still_answers_every_lookup(make_daemon, world, tmp_path):
    # Issue 24, 10: the daemon exited 78 here, and Postfix got "connection refused" for all mail.
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    seed(frozen / "cache.sqlite3", 2)
    subprocess.run(["mount", "--bind", str(frozen), str(frozen)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(frozen)], check=True)
    try:
        d = make_daemon(start=False)
        d.config.write_text(d.config.read_text().replace(d.cache, str(frozen / "cache.sqlite3")))
        d.start()
        name = world.new_domain("rofs")
        world.publish(name)
        assert d.query(name).startswith("OK secure match=")
        log = d.log()
        assert "on a read-only file system" in log and "running with the memory cache only" in log
        assert "[control] socket: cannot listen on" in log and "cannot reach this daemon" in log
        assert d.proc.poll() is None
        d.stop()
    finally:
        subprocess.run(["umount", "-l", str(frozen)])
