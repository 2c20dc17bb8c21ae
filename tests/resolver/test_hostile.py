"""The resolver under pressure it did not choose (issue 24), in-process on a fake clock: a
local resource fault is TEMP and leaves no trace in the cache; the lookups waiting for the
network are bounded; a failure counter of any size keeps answering."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.freshness import Hold
from mtasts.errors import ResourceExhausted
from mtasts.resolver import answers as resolver_module
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies

D = "example.test"
SECURE = b"OK secure match=mx.example.test servername=hostname"


def world():
    dns, policies = FakeDns(), FakePolicies()
    dns.publish(D, "id1")
    policies.serve(D, policy_body(domain=D))
    return Clock(), dns, policies


def emfile(what: str = "a socket") -> ResourceExhausted:
    try:
        ResourceExhausted.check(OSError(errno.EMFILE, "Too many open files"), what)
    except ResourceExhausted as exc:
        return exc
    raise AssertionError("EMFILE is a resource fault")


@pytest.mark.parametrize("where", ["dns", "fetch"])
def test_a_resource_fault_answers_temp_and_caches_nothing(where):
    # At the descriptor limit an enforced domain answered NOTFOUND: a silent downgrade.
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            (dns if where == "dns" else policies).fault = emfile()
            first = await host.answer(D)
            entry = host.cache.peek(D)
            (dns if where == "dns" else policies).fault = None
            second = await host.answer(D)  # the fault is gone: discovered at once, no hold waits
            return first, entry, second, host.resolver.counters

    first, entry, second, counters = asyncio.run(scenario())
    assert first.startswith(b"TEMP ") and b"out of local resources" in first
    assert entry is None  # no hold: the next lookup does not answer "no policy" from it
    assert second == SECURE
    assert counters.resource_faults == 1 and counters.internal_errors == 0


def test_a_resource_fault_in_a_background_refresh_keeps_the_policy_and_its_schedule():
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            assert await host.answer(D) == SECURE
            before = host.cache.peek(D)
            dns.fault = emfile()
            clock.advance(61)
            assert host.resolver.answer_nowait("postfix", D) == SECURE  # starts the TXT re-check
            await host.settle()
            return before, host.cache.peek(D), host.resolver.counters

    before, after, counters = asyncio.run(scenario())
    assert after == before  # not counted as a failed refresh: nothing was learned
    assert counters.resource_faults == 1 and counters.internal_errors == 0


def test_lookups_waiting_for_the_network_are_bounded(monkeypatch):
    # 100 connections x 256 pipelined new domains took 20,000 descriptors and 300 MB.
    monkeypatch.setattr(resolver_module, "MAX_NETWORK_LOOKUPS", 4)
    monkeypatch.setattr(resolver_module, "MAX_WAITING_LOOKUPS", 10)
    clock, dns, policies = world()

    async def scenario():
        dns.gate = asyncio.Event()
        async with running(Host(clock, dns, policies)) as host:
            lookups = [asyncio.ensure_future(host.answer(f"d{i}.test")) for i in range(25)]
            await asyncio.sleep(0.01)
            asked_while_held = len(dns.asked)
            busy = [t.result() for t in lookups if t.done()]
            dns.gate.set()
            rest = await asyncio.gather(*lookups)
            return asked_while_held, busy, rest, host.resolver.counters.busy

    asked, busy, rest, counted = asyncio.run(scenario())
    assert asked == 4  # only the lookups holding a network slot asked anything
    assert len(busy) == 15 and all(r.startswith(b"TEMP ") and b"busy" in r for r in busy)
    assert counted == 15
    assert sum(r == b"NOTFOUND " for r in rest) == 10  # the waiting ones were answered in turn


def test_a_huge_failure_count_still_answers():
    # A store or fleet entry with failures far past any back-off table (issue 24, 3 and 9).
    clock, dns, policies = world()
    dns.fail("_mta-sts." + D)

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            assert await host.answer(D) == b"NOTFOUND "
            entry = host.cache.peek(D)
            host.cache.put(replace(entry, failures=10**6, hold=Hold.FETCH_FAILURE, hold_until=0.0))
            clock.advance(1)
            return await host.answer(D), host.resolver.counters.internal_errors

    reply, internal = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and internal == 0


# -- the fleet: what another host (or whoever writes Redis) says is checked ------------------

from mtasts.core.entrycodec import decode_entry  # noqa: E402
from tests.support.fakes import SharedHub  # noqa: E402


def _hostile(entry_json: dict) -> bytes:
    return json.dumps(entry_json).encode()


import json  # noqa: E402


@pytest.mark.parametrize(
    "change",
    [
        {"failures": 1e400},
        {"hold_until": 1e308},
        {"hold_until": float("nan")},
        {"domain": "other.test"},
        {"failures": -1},
        {"refresh_at": "later"},
    ],
    ids=["failures-inf", "hold-forever", "hold-nan", "another-domain", "negative-failures", "text-time"],
)
def test_a_hostile_shared_entry_is_ignored_and_the_domain_discovered_here(change):
    clock, dns, policies = world()

    async def scenario():
        hub = SharedHub()
        a = Host(clock, dns, policies, shared=hub.host("a"))
        b = Host(clock, dns, policies, shared=hub.host("b"))
        async with running(a), running(b):
            assert await a.answer(D) == SECURE
            await a.settle()
            good = json.loads(hub.entries[D])
            bad = dict(good, hold="dns-failure", policy=None, **change)
            hub.entries[D] = json.dumps(bad, allow_nan=True).encode()
            await hub.broadcast(hub.hosts[0], "update", D)  # every host reads it at once
            return await b.answer(D), a.resolver.answer_nowait("postfix", D), b.resolver.counters.internal_errors

    on_b, on_a, internal = asyncio.run(scenario())
    assert on_b == SECURE and on_a == SECURE and internal == 0
    assert policies.count(D) == 2  # b discovered it itself: the shared entry was not believed


@given(
    st.binary(max_size=200)
    | st.dictionaries(
        st.sampled_from(
            ["domain", "hold", "hold_until", "txt_checked_at", "refresh_at", "failures", "last_error", "dane", "policy"]
        ),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
        max_size=9,
    ).map(lambda d: json.dumps(d).encode())
)
def test_any_shared_value_decodes_to_nothing_or_to_a_plausible_entry(raw):
    entry = decode_entry(raw, D)
    assert entry is None or entry.domain == D
