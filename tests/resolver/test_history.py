"""Policy history and downgrade warnings, through a world whose policy changes (fake clock)."""

from __future__ import annotations

import asyncio
import logging

from mtasts.core.history import MAX_CHANGES, Change
from mtasts.servers.control import ControlServer
from mtasts.store.sqlite import SqliteStore
from mtasts.store.tiered import PolicyCache
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies

D = "changing.test"
MX = "mx.changing.test"
TLSA = "3 1 1 " + "ab" * 32


def world():
    dns, policies = FakeDns(), FakePolicies()
    dns.publish(D, "id1")
    policies.serve(D, policy_body(D, max_age=86400 * 30))
    return Clock(), dns, policies


async def recheck(host, clock, seconds=61):
    clock.advance(seconds)
    host.resolver.answer_nowait("postfix", D)
    await host.settle()


def test_a_mode_downgrade_is_recorded_and_warned_with_its_evidence(tmp_path, caplog):
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            await host.answer(D)
            dns.publish(D, "id2")
            policies.serve(D, policy_body(D, mode="none", mx=("mx.{d}", "*.elsewhere.example"), max_age=86400 * 30))
            with caplog.at_level(logging.INFO, "mtasts.resolver"):
                await recheck(host, clock)
            shown = await ControlServer(host.resolver, str(tmp_path / "c.sock")).execute(
                {"command": "history", "domain": D}
            )
            return shown, host.resolver.counters.policy_changes

    shown, counted = asyncio.run(scenario())
    changes = [(c["change"], c["old"], c["new"], c["downgrade"]) for c in shown["changes"]]
    assert changes == [
        ("id", "id1", "id2", False),
        ("mode", "enforce", "none", True),
        ("mx", "mx.changing.test", "*.elsewhere.example,mx.changing.test", False),
    ]
    assert counted == {"id": 1, "mode": 1, "mx": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "changing.test: DOWNGRADE, mode enforce -> none (https://mta-sts.changing.test/.well-known/mta-sts.txt)"
    ]


def test_a_vanished_record_is_noted_once_while_the_policy_stays(caplog):
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            await host.answer(D)
            dns.remove("_mta-sts." + D)
            with caplog.at_level(logging.WARNING, "mtasts.resolver"):
                for _ in range(3):
                    await recheck(host, clock)
                dns.publish(D, "id1")
                await recheck(host, clock)
                dns.remove("_mta-sts." + D)
                await recheck(host, clock)
            return host.cache.history(D), host.resolver.answer_nowait("postfix", D)

    changes, answer = asyncio.run(scenario())
    assert [(c.kind, c.new, c.downgrade) for c in changes] == [("txt-gone", "nxdomain", True)] * 2
    assert answer.startswith(b"OK secure")  # RFC 8461 §3.3: the cached policy stays in force
    gone = [r.getMessage() for r in caplog.records if "DOWNGRADE, txt-gone" in r.getMessage()]
    assert len(gone) == 2 and "stays in force until" in gone[0]


def test_dane_going_away_is_a_downgrade_and_a_failure_is_no_change(caplog):
    clock, dns, policies = world()
    dns.signed(D, "MX", f"10 {MX}.")
    dns.signed(MX, "A", "192.0.2.25")
    dns.signed(MX, "AAAA")
    dns.signed(f"_25._tcp.{MX}", "TLSA", TLSA)

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer", "max_ttl": 300.0})) as host:
            assert await host.answer(D) == b"OK dane-only"
            dns.secure_fail(f"_25._tcp.{MX}", "TLSA")  # a failure: no change recorded
            await recheck(host, clock, 301)
            failing = list(host.cache.history(D))
            dns.signed(f"_25._tcp.{MX}", "TLSA", TLSA)  # back: no change either
            await recheck(host, clock, 301)
            dns.signed(f"_25._tcp.{MX}", "TLSA")  # the records are gone
            with caplog.at_level(logging.WARNING, "mtasts.resolver"):
                await recheck(host, clock, 301)
            dns.signed(f"_25._tcp.{MX}", "TLSA", TLSA)  # and back: an upgrade, no warning
            await recheck(host, clock, 301)
            return failing, host.cache.history(D)

    failing, changes = asyncio.run(scenario())
    assert failing == []
    assert [(c.kind, c.old, c.new, c.downgrade) for c in changes] == [
        ("dane", "dane-only", "no-tlsa", True),
        ("dane", "no-tlsa", "dane-only", False),
    ]
    assert [r.getMessage() for r in caplog.records if "DOWNGRADE" in r.getMessage()] == [
        "changing.test: DOWNGRADE, dane dane-only -> no-tlsa (mx.changing.test no-tlsa)"
    ]


def test_history_is_bounded_per_domain_in_memory_and_in_the_store(tmp_path):
    changes = [Change(D, 1000.0 + i, "id", f"a{i}", f"a{i + 1}") for i in range(MAX_CHANGES + 5)]
    for cache in (PolicyCache(10), PolicyCache(10, SqliteStore(str(tmp_path / "c.sqlite3")))):
        for change in changes:
            cache.add_changes([change])
        kept = cache.history(D)
        assert len(kept) == MAX_CHANGES and kept[0].old == "a5" and kept[-1].new == f"a{MAX_CHANGES + 5}"
        assert cache.history("other.test") == []
        cache.close()
