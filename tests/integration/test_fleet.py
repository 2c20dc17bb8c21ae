"""A fleet: two daemons (two "hosts") sharing one real redis-server ([cache] backend = "redis")."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from tests.integration.conftest import Daemon
from tests.support.launcher import free_port, wait_for
from tests.support.policies import policy_text
from tests.support.redis import RedisServer
from tests.support.socketmap import netstring, read_netstring

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (.ci/run installs it)"),
]
pytest.importorskip("redis")


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(free_port(), tmp_path).start()
    yield server
    if server.proc.poll() is None:
        server.kill()


@pytest.fixture
def fleet(dns_server, policy_host, redis_server, tmp_path):
    """Two daemons, each with its own directory and SQLite store, sharing redis_server."""
    ca = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    hosts = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        d = Daemon(tmp_path / name, dns_server, str(ca))
        d.config.write_text(
            d.config.read_text().replace(
                "[cache]\n",
                (
                    f'[cache]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_server.port}/0"\n'
                    'prefix = "t:"\ntimeout = 0.2\n'
                ),
                1,
            )
        )
        hosts.append(d)
    yield hosts
    for d in hosts:
        if d.proc is not None and d.proc.poll() is None:
            d.stop()


def start(hosts):
    return [d.start() for d in hosts]


def test_learned_on_one_host_served_by_the_other_without_dns_or_fetch(world, fleet, redis_server):
    a, b = start(fleet)
    d = world.new_domain()
    world.publish(d)
    assert a.query(d).startswith("OK secure match=")
    txt, fetches = world.dns.count(f"_mta-sts.{d}"), world.fetches(d)
    assert (txt, fetches) == (1, 1)
    time.sleep(0.3)  # A shares in the background
    assert b.query(d) == a.query(d)
    assert world.dns.count(f"_mta-sts.{d}") == txt and world.fetches(d) == fetches
    assert f"t:e:{d}" in redis_server.keys()
    # No MTA-STS: the negative answer is shared too.
    n = world.new_domain()
    assert a.query(n) == "NOTFOUND "
    time.sleep(0.3)
    assert b.query(n) == "NOTFOUND "
    assert world.dns.count(f"_mta-sts.{n}") == 1


def learned_by_both(world, fleet):
    """Start the fleet; A learns a new domain, B gets it from Redis into its own tiers."""
    a, b = start(fleet)
    d = world.new_domain()
    world.publish(d)
    a.query(d)
    time.sleep(0.3)  # A shares in the background
    answer = b.query(d)
    assert world.fetches(d) == 1
    return a, b, d, answer


def test_purge_on_one_host_holds_fleet_wide(world, fleet):
    a, b, d, _answer = learned_by_both(world, fleet)
    purged = a.cli("cache", "purge", d)
    assert purged.returncode == 0, purged.stderr
    time.sleep(0.3)  # B hears the purge
    b.query(d)
    assert world.fetches(d) == 2  # B had to discover it again: its copy was dropped


def test_fleet_single_flight(world, fleet):
    a, b = start(fleet)
    d = world.new_domain()
    world.publish(d, trickle=0.01)  # a slow policy host: the fetch takes about a second
    answers = {}

    def ask(host, name):
        answers[name] = host.query(d)

    threads = [threading.Thread(target=ask, args=(h, n)) for h, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    assert answers["a"] == answers["b"] and answers["a"].startswith("OK secure")
    assert world.fetches(d) == 1  # B waited for A's result instead of fetching


def test_redis_down_under_load_then_back(world, fleet, redis_server):
    a, b = start(fleet)
    known = world.new_domain()
    world.publish(known)
    a.query(known)
    stop = threading.Event()
    replies, errors = [], []

    def load():
        s = a.connect()
        while not stop.is_set():
            try:
                s.sendall(netstring(f"postfix {known}".encode()))
                replies.append(read_netstring(s).decode())
            except Exception as exc:
                errors.append(exc)
                return

    worker = threading.Thread(target=load)
    worker.start()
    time.sleep(0.3)
    redis_server.kill()
    time.sleep(0.5)
    fresh = world.new_domain()
    world.publish(fresh)
    started = time.monotonic()
    assert a.query(fresh).startswith("OK secure")  # a miss: discovered alone, Redis down
    assert time.monotonic() - started < 3
    assert b.query(fresh).startswith("OK secure")
    time.sleep(0.5)
    stop.set()
    worker.join(10)
    assert not errors and len(replies) > 100
    assert set(replies) == {a.query(known)}  # never TEMP, never anything else
    assert a.log().count(" unavailable (") == 1  # one line per outage
    redis_server.start()
    deadline = time.monotonic() + 15
    later = world.new_domain()
    world.publish(later)
    while not all(" is back after " in h.log() for h in (a, b)) and time.monotonic() < deadline:
        time.sleep(0.1)  # each host's event listener reconnects on its own
    assert " is back after " in a.log() and " is back after " in b.log()
    a.query(later)
    time.sleep(0.3)
    assert b.query(later) == a.query(later)
    assert world.fetches(later) == 1  # sharing works again


def test_refresh_on_one_host_updates_the_others(world, fleet):
    a, b, d, old = learned_by_both(world, fleet)
    world.publish(d, policy_text(mx=("mx7.{d}",), domain=d), policy_id="2")
    refreshed = a.cli("cache", "refresh", d)
    assert refreshed.returncode == 0, refreshed.stderr
    time.sleep(0.3)  # B hears the update and replaces its own copy
    fetches = world.fetches(d)
    assert b.query(d) == f"OK secure match=mx7.{d} servername=hostname" != old
    assert world.fetches(d) == fetches == 2  # A's first fetch and A's refresh; none by B


def test_a_host_with_dead_dns_does_not_wipe_the_fleets_valid_policy(world, fleet, redis_server, tmp_path, dns_server):
    # A and B hold a valid enforce policy. Redis restarts empty (no persistence); host C,
    # whose DNS is dead, looks the domain up, fails, and shares its failure. RFC 8461 §3.3:
    # A and B keep applying their valid policy.
    import redis

    a, b, d, answer = learned_by_both(world, fleet)
    assert answer.startswith("OK secure match=")
    redis.Redis(port=redis_server.port).flushall()
    (tmp_path / "c").mkdir()
    c = Daemon(tmp_path / "c", dns_server, str(tmp_path / "ca.pem"))
    c.config.write_text(
        c.config.read_text()
        .replace(f'nameservers = ["{dns_server.address}"]', 'nameservers = ["127.0.0.1:9"]')
        .replace("failure_ttl = 1\n", "failure_ttl = 60\n")
        .replace(
            "[cache]\n",
            (
                f'[cache]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_server.port}/0"\n'
                'prefix = "t:"\ntimeout = 0.2\n'
            ),
            1,
        )
    )
    c.start()
    try:
        assert c.query(d) == "NOTFOUND "  # its DNS timed out: no policy known to C
        assert f"t:e:{d}" in redis_server.keys()  # C's failure entry is shared
        time.sleep(0.5)  # A and B hear C's update
        assert a.query(d) == answer and b.query(d) == answer
        import json

        for host in (a, b):
            shown = json.loads(host.cli("cache", "show", d, "--json").stdout)["entry"]
            assert (shown["state"], shown["policy_id"], shown["valid"]) == ("policy", "1", True)
    finally:
        c.stop()


def test_an_override_added_on_one_host_answers_on_the_other_and_ends_everywhere(world, fleet, redis_server):
    a, b = start(fleet)
    d = world.new_domain()
    world.publish(d)
    assert b.query(d).startswith("OK secure")
    added = a.cli("override", "add", d, "--until", "1h", "--reason", "partner firewall", "--level", "encrypt")
    assert added.returncode == 0, added.stderr
    assert wait_for(lambda: b.query(d) == "OK encrypt", 5)
    assert f"t:o:{d}" in redis_server.keys()
    assert "override from another host of the fleet (encrypt, partner firewall)" in b.log()
    assert a.cli("override", "remove", d).returncode == 0
    assert wait_for(lambda: b.query(d).startswith("OK secure"), 5)
    assert f"t:o:{d}" not in redis_server.keys()
