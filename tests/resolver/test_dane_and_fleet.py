"""DANE orchestration and the fleet rules, in-process on a fake clock.

DANE (RFC 7672; RFC 8461 §2: MTA-STS never overrides it): which answer wins, when a check
runs, what a temporary failure keeps. The fleet (store.fleet with a fake shared tier): one
discovery per domain for all hosts, and no host's failure replaces another's valid policy
(RFC 8461 §3.3)."""

from __future__ import annotations

import asyncio

from mtasts.core.freshness import Hold
from mtasts.errors import FetchError, FetchFailure
from mtasts.net.dns import Outcome
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies, SharedHub

D = "example.test"
MX = "mx.example.test"
SECURE = b"OK secure match=mx.example.test servername=hostname"
TLSA = "3 1 1 " + "ab" * 32
DANE = dict(dane={"mode": "prefer"})


def sts_world():
    dns, policies = FakeDns(), FakePolicies()
    dns.publish(D, "id1")
    policies.serve(D, policy_body(domain=D, max_age=604800))
    return Clock(), dns, policies


def sign(dns: FakeDns, tlsa: bool = True, validated: bool = True) -> None:
    dns.signed(D, "MX", f"10 {MX}.", validated=validated)
    dns.signed(MX, "A", "192.0.2.25", validated=validated)
    dns.signed(MX, "AAAA", validated=validated)
    dns.signed(f"_25._tcp.{MX}", "TLSA", *((TLSA,) if tlsa else ()), validated=validated)


def test_usable_tlsa_gives_dane_only_over_the_sts_policy():
    clock, dns, policies = sts_world()
    sign(dns)

    async def scenario():
        async with running(Host(clock, dns, policies, **DANE)) as host:
            return await host.answer(D), host.resolver.answer_nowait("postfix", D)

    first, cached = asyncio.run(scenario())
    assert first == cached == b"OK dane-only"
    assert dns.count(f"_25._tcp.{MX}", "TLSA") == 1  # the cached answer used the stored result


def test_unsigned_or_without_tlsa_the_sts_answer_stands():
    for validated, tlsa in ((False, True), (True, False)):
        clock, dns, policies = sts_world()
        sign(dns, tlsa=tlsa, validated=validated)

        async def scenario(clock=clock, dns=dns, policies=policies):
            async with running(Host(clock, dns, policies, **DANE)) as host:
                return await host.answer(D)

        assert asyncio.run(scenario()) == SECURE, (validated, tlsa)


def test_a_domain_without_an_sts_answer_costs_at_most_the_early_mx_query():
    # NOTFOUND leaves DANE to Postfix itself: no DANE check follows. What discovery started
    # early is all it costs: the MX query (Postfix asks it next anyway) and the policy
    # host's addresses (prepared, then abandoned: no connection).
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    sign(dns)

    async def scenario():
        async with running(Host(clock, dns, policies, **DANE)) as host:
            return await host.answer(D)

    assert asyncio.run(scenario()) == b"NOTFOUND "
    assert dns.count(D, "MX") == 1 and dns.count(MX, "A") == dns.count(f"_25._tcp.{MX}", "TLSA") == 0
    assert policies.prepared == policies.abandoned == [D] and policies.fetched == []


def test_a_first_lookup_asks_txt_policy_host_and_mx_in_one_round_trip():
    clock, dns, policies = sts_world()

    async def scenario():
        dns.gate = asyncio.Event()
        async with running(Host(clock, dns, policies, **DANE)) as host:
            lookup = asyncio.ensure_future(host.answer(D))
            await asyncio.sleep(0.01)
            in_flight = [q for q in dns.asked if q != (".", "SOA")]  # asked before any answer (not the start-up probe)
            prepared = list(policies.prepared)
            dns.gate.set()
            return in_flight, prepared, await lookup, host.resolver.counters.dane_checks

    in_flight, prepared, reply, checks = asyncio.run(scenario())
    assert sorted(in_flight) == sorted([(D, "MX"), ("_mta-sts." + D, "TXT")]) and prepared == [D]
    assert reply == SECURE and checks == 1 and dns.count(D, "MX") == 1  # the check used the early answer


def test_a_stale_dane_result_is_rechecked_in_the_background_while_answering():
    clock, dns, policies = sts_world()
    sign(dns)

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer", "max_ttl": 600.0})) as host:
            assert await host.answer(D) == b"OK dane-only"
            sign(dns, tlsa=False)  # the TLSA records are withdrawn
            clock.advance(601)
            stale = host.resolver.answer_nowait("postfix", D)  # the last result, at once
            await host.settle()
            return stale, host.resolver.answer_nowait("postfix", D)

    stale, fresh = asyncio.run(scenario())
    assert stale == b"OK dane-only" and fresh == SECURE


def test_a_temporary_failure_after_usable_tlsa_keeps_dane():
    # Answering MTA-STS now would let a DNS fault switch DANE off: Postfix decides ("dane").
    clock, dns, policies = sts_world()
    sign(dns)

    async def scenario():
        async with running(Host(clock, dns, policies, dane={"mode": "prefer", "max_ttl": 600.0})) as host:
            await host.answer(D)
            dns.secure_fail(f"_25._tcp.{MX}", "TLSA")
            clock.advance(601)
            host.resolver.answer_nowait("postfix", D)
            await host.settle()
            return host.resolver.answer_nowait("postfix", D)

    assert asyncio.run(scenario()) == b"OK dane"


def test_a_temporary_failure_on_a_domain_never_seen_with_dane_keeps_sts():
    clock, dns, policies = sts_world()
    sign(dns)
    dns.secure_fail(f"_25._tcp.{MX}", "TLSA", Outcome.TIMEOUT)

    async def scenario():
        async with running(Host(clock, dns, policies, **DANE)) as host:
            return await host.answer(D)

    assert asyncio.run(scenario()) == SECURE


def test_a_profile_without_dane_never_asks_dns_for_it():
    clock, dns, policies = sts_world()
    sign(dns)
    from mtasts.core.reply import MapProfile

    async def scenario():
        async with running(Host(clock, dns, policies, maps={"postfix": MapProfile(dane=False)}, **DANE)) as host:
            return await host.answer(D)

    assert asyncio.run(scenario()) == SECURE and dns.count(D, "MX") == 0


def test_relay_next_hops_are_checked_at_the_host_without_mx():
    clock, dns, policies = sts_world()
    dns.signed("relay.example.test", "A", "192.0.2.26")
    dns.signed("relay.example.test", "AAAA")
    dns.signed("_587._tcp.relay.example.test", "TLSA", TLSA)
    dns.publish("relay.example.test", "r1")
    policies.serve("relay.example.test", policy_body(domain="relay.example.test", mx=("relay.example.test",)))

    async def scenario():
        async with running(Host(clock, dns, policies, **DANE)) as host:
            return await host.answer("[relay.example.test]:587"), await host.answer("relay.example.test")

    relay, domain = asyncio.run(scenario())
    assert relay == b"OK dane-only"
    assert domain == b"OK secure match=relay.example.test servername=hostname"  # its MX: none signed
    assert dns.count("relay.example.test", "MX") == 1  # asked for the domain key only


# -- the fleet ------------------------------------------------------------------------


def fleet(n: int, clock: Clock, dns: FakeDns, policies: FakePolicies, **config):
    hub = SharedHub()
    return hub, [Host(clock, dns, policies, shared=hub.host(f"host{i}"), **config) for i in range(n)]


def test_a_policy_learned_by_one_host_is_answered_by_the_others_without_a_fetch():
    clock, dns, policies = sts_world()

    async def scenario():
        hub, (a, b) = fleet(2, clock, dns, policies)
        async with running(a), running(b):
            assert await a.answer(D) == SECURE
            await a.settle()
            assert await b.answer(D) == SECURE
            return hub

    asyncio.run(scenario())
    assert policies.count(D) == 1 and dns.count("_mta-sts." + D) == 1


def test_concurrent_first_lookups_on_two_hosts_make_one_discovery():
    clock, dns, policies = sts_world()

    async def scenario():
        _hub, (a, b) = fleet(2, clock, dns, policies)
        policies.gate = asyncio.Event()
        async with running(a), running(b):
            first = asyncio.ensure_future(a.answer(D))
            await asyncio.sleep(0.01)  # a holds the fleet lock and is fetching
            second = asyncio.ensure_future(b.answer(D))
            await asyncio.sleep(0.01)
            policies.gate.set()
            return await first, await second

    assert asyncio.run(scenario()) == (SECURE, SECURE) and policies.count(D) == 1


def test_one_hosts_failure_never_wipes_a_valid_policy_on_the_others():
    clock, dns, policies = sts_world()

    async def scenario():
        hub, (a, b, broken) = fleet(3, clock, dns, policies)
        async with running(a), running(b), running(broken):
            assert await a.answer(D) == SECURE
            await a.settle()
            assert await b.answer(D) == SECURE
            # The shared cache is emptied (a Redis restart); the third host's DNS is dead.
            hub.entries.clear()
            broken_dns = FakeDns()
            broken_dns.fail("_mta-sts." + D)
            broken.resolver.discoverer.dns = broken_dns
            assert await broken.answer(D) == b"NOTFOUND "
            await broken.settle()
            held = broken.cache.peek(D)
            return a.resolver.answer_nowait("postfix", D), b.resolver.answer_nowait("postfix", D), held

    on_a, on_b, held = asyncio.run(scenario())
    assert held.hold is Hold.DNS_FAILURE  # the update event reached a and b ...
    assert on_a == on_b == SECURE  # ... and their valid policy stands (RFC 8461 §3.3)


def test_a_newer_policy_from_another_host_replaces_the_older_one():
    clock, dns, policies = sts_world()

    async def scenario():
        _hub, (a, b) = fleet(2, clock, dns, policies, cache={"txt_recheck": 60.0})
        async with running(a), running(b):
            await a.answer(D)
            await a.settle()
            await b.answer(D)
            dns.publish(D, "id2")
            policies.serve(D, policy_body(domain=D, mx=("mx2.{d}",), max_age=604800))
            clock.advance(61)
            a.resolver.answer_nowait("postfix", D)  # a's re-check finds id2 and fetches it
            await a.settle()
            return b.resolver.answer_nowait("postfix", D), b.cache.peek(D).cached.policy_id

    reply, policy_id = asyncio.run(scenario())
    assert reply == b"OK secure match=mx2.example.test servername=hostname" and policy_id == "id2"
    assert policies.count(D) == 2  # b learned it from a


def test_a_purge_on_one_host_purges_the_fleet():
    clock, dns, policies = sts_world()

    async def scenario():
        hub, (a, b) = fleet(2, clock, dns, policies)
        async with running(a), running(b):
            await a.answer(D)
            await a.settle()
            await b.answer(D)
            assert await a.resolver.purge(D)
            return b.cache.peek(D), hub.entries

    left_on_b, shared = asyncio.run(scenario())
    assert left_on_b is None and shared == {}


def test_a_hosts_own_bookkeeping_is_not_shared():
    # TXT re-checks every txt_recheck per domain would cost every host a shared write a minute.
    clock, dns, policies = sts_world()

    async def scenario():
        hub, (a,) = fleet(1, clock, dns, policies, cache={"txt_recheck": 60.0})
        async with running(a):
            await a.answer(D)
            await a.settle()
            puts = hub.puts
            for _ in range(5):
                clock.advance(61)
                a.resolver.answer_nowait("postfix", D)
                await a.settle()
            return puts, hub.puts

    assert asyncio.run(scenario()) == (1, 1)


def test_a_failure_shared_by_another_host_does_not_stop_discovery_here():
    # Another host's fetch failure is a running hold: this host answers NOTFOUND for it
    # without a fetch of its own (one back-off for the fleet), then discovers once it ends.
    clock, dns, policies = sts_world()
    policies.serve(D, FetchError(FetchFailure.CONNECT, "refused"))

    async def scenario():
        _hub, (a, b) = fleet(2, clock, dns, policies)
        async with running(a), running(b):
            assert await a.answer(D) == b"NOTFOUND "
            await a.settle()
            assert await b.answer(D) == b"NOTFOUND "
            fetches = policies.count(D)
            policies.serve(D, policy_body(domain=D))
            clock.advance(301)
            return fetches, await b.answer(D)

    fetches, later = asyncio.run(scenario())
    assert fetches == 1 and later == SECURE
