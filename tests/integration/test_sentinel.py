"""A fleet whose shared tier is highly available: Redis Sentinel, a real failover.

One master, one replica, one sentinel (quorum 1), all real redis-server processes; two
daemons find the master through the sentinel ([cache] sentinels). The master is killed: the
sentinel promotes the replica, and the daemons share through it without being told.
"""

from __future__ import annotations

import shutil

import pytest

from tests.integration.conftest import Daemon
from tests.support.launcher import free_port, wait_for
from tests.support.redis import RedisServer, SentinelServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed (.ci/run installs it)"),
]
pytest.importorskip("redis")


@pytest.fixture
def sentinel_world(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "r").mkdir()
    master = RedisServer(free_port(), tmp_path / "m").start()
    replica = RedisServer(free_port(), tmp_path / "r", replica_of=master.port).start()
    assert wait_for(lambda: replica.replication().get("master_link_status") == "up"), replica.replication()
    sentinel = SentinelServer(free_port(), tmp_path, "mymaster", master.port).start()
    assert wait_for(lambda: sentinel.replicas() == [replica.port], timeout=15), sentinel.replicas()
    yield master, replica, sentinel
    for server in (sentinel, replica, master):
        server.stop()


def test_the_fleet_follows_a_sentinel_failover(dns_server, policy_host, world, sentinel_world, tmp_path):
    master, replica, sentinel = sentinel_world
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
                    '[cache]\nbackend = "redis"\nurl = "redis://ignored-with-sentinels/0"\n'
                    f'sentinels = ["127.0.0.1:{sentinel.port}"]\nsentinel_master = "mymaster"\n'
                    'prefix = "t:"\ntimeout = 0.3\n'
                ),
                1,
            )
        )
        hosts.append(d.start())
    a, b = hosts
    try:
        assert f"sentinel mymaster at 127.0.0.1:{sentinel.port}" in a.log()
        before = world.new_domain("sent")
        world.publish(before)
        answer = a.query(before)
        assert answer.startswith("OK secure match=")
        assert wait_for(lambda: f"t:e:{before}" in master.keys())
        assert b.query(before) == answer and world.fetches(before) == 1  # b had it from the master

        master.stop()  # the master dies; the sentinel promotes the replica
        assert wait_for(lambda: sentinel.master_port() == replica.port, timeout=30), sentinel.master_port()
        assert f"t:e:{before}" in replica.keys()  # replicated before the failover

        # The daemons notice on their next calls (at most a failure and RETRY_SECONDS later).
        def shared_again() -> bool:
            probe = world.new_domain("probe")
            a.query(probe)
            return f"t:e:{probe}" in replica.keys()

        assert wait_for(shared_again, timeout=30, interval=0.5), a.log()
        after = world.new_domain("after")
        world.publish(after)
        assert a.query(after).startswith("OK secure match=")
        assert wait_for(lambda: f"t:e:{after}" in replica.keys())
        assert b.query(after) == a.query(after)
        assert world.fetches(after) == 1  # b took it from the new master, no discovery of its own
        assert "unavailable" in a.log() and "is back" in a.log()
    finally:
        for d in hosts:
            d.stop()
