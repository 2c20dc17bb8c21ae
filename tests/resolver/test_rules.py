"""The resolver's rules in-process on a fake clock: single flight, holds, back-off, refresh
(RFC 8461 §3.3, §5.1, §10.2)."""

from __future__ import annotations

import asyncio
import logging

from mtasts.core.freshness import RETRY_MAX, RETRY_MIN, Hold
from mtasts.errors import FetchError, FetchFailure
from mtasts.net.dns import Outcome
from tests.resolver.conftest import Host, policy_body, running
from tests.support.fakes import Clock, FakeDns, FakePolicies

D = "example.test"
SECURE = b"OK secure match=mx.example.test servername=hostname"


def world(domain: str = D, policy_id: str = "id1", **body):
    dns, policies = FakeDns(), FakePolicies()
    dns.publish(domain, policy_id)
    policies.serve(domain, policy_body(domain=domain, **body))
    return Clock(), dns, policies


def test_concurrent_lookups_of_one_domain_share_one_discovery():
    clock, dns, policies = world()

    async def scenario():
        dns.gate = asyncio.Event()
        async with running(Host(clock, dns, policies)) as host:
            lookups = [asyncio.ensure_future(host.answer(D)) for _ in range(50)]
            await asyncio.sleep(0.01)
            dns.gate.set()
            replies = await asyncio.gather(*lookups)
            return replies, host.resolver.counters.discoveries

    replies, discoveries = asyncio.run(scenario())
    assert set(replies) == {SECURE}
    assert dns.count("_mta-sts." + D) == 1 and policies.count(D) == 1 and discoveries == 1


def test_cached_answers_need_no_network_until_the_txt_recheck():
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            assert await host.answer(D) == SECURE
            clock.advance(59)
            assert host.resolver.answer_nowait("postfix", D) == SECURE
            await host.settle()
            before = dns.count("_mta-sts." + D)
            clock.advance(2)  # past txt_recheck: the answer stays immediate, a re-check starts
            assert host.resolver.answer_nowait("postfix", D) == SECURE
            await host.settle()
            return before, dns.count("_mta-sts." + D), policies.count(D)

    before, after, fetches = asyncio.run(scenario())
    assert (before, after, fetches) == (1, 2, 1)  # same id: no second fetch


def test_no_record_is_held_for_its_negative_ttl_within_the_bounds():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()

    async def scenario():
        async with running(
            Host(clock, dns, policies, cache={"negative_ttl_min": 300.0, "negative_ttl_max": 3600.0})
        ) as host:
            assert await host.answer("plain.test") == b"NOTFOUND "
            entry = host.cache.peek("plain.test")
            clock.advance(899)  # FakeDns' NXDOMAIN carries a negative TTL of 900 s
            assert host.resolver.answer_nowait("postfix", "plain.test") == b"NOTFOUND "
            asked = dns.count("_mta-sts.plain.test")
            clock.advance(2)
            assert host.resolver.answer_nowait("postfix", "plain.test") is None  # discover again
            return entry, asked

    entry, asked = asyncio.run(scenario())
    assert entry.hold is Hold.NO_RECORD and entry.hold_until == entry.txt_checked_at + 900
    assert asked == 1 and policies.count("plain.test") == 0  # no fetch without a record


def test_txt_strings_that_only_look_like_sts_records_are_discarded():
    # RFC 8461 §3.1: records not beginning with "v=STSv1;" are discarded: no record, no fetch.
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    dns.txt_texts("_mta-sts." + D, b"v=STSv1x; id=abc", b"spf-ish text")
    policies.serve(D, policy_body(domain=D))

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            return await host.answer(D), host.cache.peek(D)

    reply, entry = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and entry.hold is Hold.NO_RECORD and policies.count(D) == 0


def test_two_sts_records_are_an_invalid_record_held_for_failure_ttl():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    dns.txt_texts("_mta-sts." + D, b"v=STSv1; id=a", b"v=STSv1; id=b")

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"failure_ttl": 45.0})) as host:
            return await host.answer(D), host.cache.peek(D)

    reply, entry = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and entry.hold is Hold.INVALID_RECORD
    assert entry.hold_until - entry.txt_checked_at == 45.0 and "exactly one" in entry.last_error


def test_failed_fetches_back_off_per_domain_doubling_to_the_cap():
    clock, dns, policies = world()
    policies.serve(D, FetchError(FetchFailure.HTTP_STATUS, "HTTP 503"))

    async def scenario():
        holds = []
        async with running(Host(clock, dns, policies)) as host:
            for _ in range(6):
                assert await host.answer(D) == b"NOTFOUND "
                entry = host.cache.peek(D)
                holds.append(entry.hold_until - clock.now)
                assert host.resolver.answer_nowait("postfix", D) == b"NOTFOUND "  # held: no network
                clock.advance(holds[-1] + 1)
        return holds

    holds = asyncio.run(scenario())
    assert holds == [RETRY_MIN, 2 * RETRY_MIN, 4 * RETRY_MIN, 8 * RETRY_MIN, RETRY_MAX, RETRY_MAX]
    assert policies.count(D) == 6


def test_a_failed_refresh_never_replaces_the_valid_policy_and_warns(caplog):
    clock, dns, policies = world(max_age=604800)

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            assert await host.answer(D) == SECURE
            policies.serve(D, FetchError(FetchFailure.TLS, "certificate expired"))
            clock.advance(86400)  # the daily proactive refresh (§10.2)
            with caplog.at_level(logging.WARNING, "mtasts.resolver"):
                assert host.resolver.sweep() == 1
                await host.settle()
            reply = host.resolver.answer_nowait("postfix", D)
            return reply, host.cache.peek(D), host.resolver.counters

    reply, entry, counters = asyncio.run(scenario())
    assert reply == SECURE and entry.failures == 1 and entry.refresh_at == entry.txt_checked_at + RETRY_MIN
    assert counters.refresh_failed_enforced == 1 and counters.by_failure == {"tls": 1}
    assert "refresh of the enforce policy failed (proactive refresh)" in caplog.text


def test_a_changed_id_whose_fetch_fails_waits_for_its_back_off():
    # RFC 8461 §3.3: per-id back-off. Before the fix this fetched at every txt_recheck (60 s).
    clock, dns, policies = world(max_age=604800)

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            assert await host.answer(D) == SECURE
            dns.publish(D, "id2")
            policies.serve(D, FetchError(FetchFailure.CONNECT, "refused"))
            fetches = []
            for _ in range(10):  # ten minutes of lookups, one a minute
                clock.advance(61)
                assert host.resolver.answer_nowait("postfix", D) == SECURE  # the valid policy stands
                await host.settle()
                fetches.append(policies.count(D))
            return fetches

    fetches = asyncio.run(scenario())
    # 1 first fetch; the new id's fetch at the first re-check; the next only after 300 s.
    assert fetches[0] == 2 and fetches[3] == 2 and fetches[-1] == 3


def test_a_changed_id_is_fetched_at_the_next_recheck_and_replaces_the_policy():
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            await host.answer(D)
            dns.publish(D, "id2")
            policies.serve(D, policy_body(mode="testing", domain=D))
            clock.advance(61)
            host.resolver.answer_nowait("postfix", D)
            await host.settle()
            return host.resolver.answer_nowait("postfix", D), host.cache.peek(D)

    reply, entry = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and entry.cached.policy_id == "id2"  # testing: no enforcement


def test_a_vanished_txt_record_keeps_the_cached_policy():
    clock, dns, policies = world()

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"txt_recheck": 60.0})) as host:
            await host.answer(D)
            dns.remove("_mta-sts." + D)
            clock.advance(61)
            host.resolver.answer_nowait("postfix", D)
            await host.settle()
            return host.resolver.answer_nowait("postfix", D)

    assert asyncio.run(scenario()) == SECURE  # §3.3: a missing TXT never removes a policy


def test_an_expired_policy_is_not_revived_without_a_fetch():
    clock, dns, policies = world(max_age=3600)

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            assert await host.answer(D) == SECURE
            policies.serve(D, FetchError(FetchFailure.CONNECT, "refused"))
            clock.advance(3601)
            reply = await host.answer(D)
            return reply, host.cache.peek(D)

    reply, entry = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and entry.hold is Hold.EXPIRED and entry.cached is not None


def test_dns_failure_is_held_briefly_and_never_defers():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    dns.fail("_mta-sts." + D, Outcome.TIMEOUT)

    async def scenario():
        async with running(Host(clock, dns, policies, cache={"failure_ttl": 30.0})) as host:
            reply = await host.answer(D)
            return reply, host.cache.peek(D)

    reply, entry = asyncio.run(scenario())
    assert reply == b"NOTFOUND " and entry.hold is Hold.DNS_FAILURE
    assert entry.hold_until - entry.txt_checked_at == 30.0


def test_sweep_refreshes_due_policies_without_lookups():
    clock, dns, policies = world(max_age=604800)

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            await host.answer(D)
            assert host.resolver.sweep() == 0
            policies.serve(D, policy_body(mx=("fresh.{d}",), max_age=604800, domain=D))  # same id, new body
            clock.advance(86400)
            assert host.resolver.sweep() == 1
            await host.settle()
            return host.resolver.answer_nowait("postfix", D)

    assert asyncio.run(scenario()) == b"OK secure match=fresh.example.test servername=hostname"


def test_keys_that_are_no_domain_get_notfound_without_network():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()

    async def scenario():
        async with running(Host(clock, dns, policies)) as host:
            return [await host.answer(k) for k in ("[192.0.2.1]", ".example.test", "", "a..b")]

    assert asyncio.run(scenario()) == [b"NOTFOUND "] * 4 and dns.asked == []


def test_the_reply_memo_formats_each_answer_once_per_policy_and_profile():
    from mtasts.core.freshness import CachedPolicy
    from mtasts.core.policy import parse_policy
    from mtasts.core.reply import MapProfile, tls_policy_reply
    from mtasts.resolver.answers import ReplyMemo

    policy = parse_policy(policy_body(D))
    cached, refreshed = CachedPolicy(policy, "id1", 0.0), CachedPolicy(policy, "id1", 0.0)
    plain, old = MapProfile(), MapProfile(sni=False)
    memo = ReplyMemo(limit=3)
    first = memo.reply(D, cached, plain)
    assert first == tls_policy_reply(D, policy, plain) and memo.reply(D, cached, plain) is first  # memoised
    assert memo.reply(D, cached, old) == tls_policy_reply(D, policy, old) and len(memo) == 2
    again = memo.reply(D, refreshed, plain)  # a new policy object: a new answer, in the domain's place
    assert again == first and again is not first and len(memo) == 2
    assert memo.reply(D, refreshed, plain) is again
    memo.reply("other.test", cached, plain)
    assert len(memo) == 3
    memo.reply("third.test", cached, plain)
    assert len(memo) == 1  # full: cleared, then this one kept
    assert memo.reply(D, None, plain) == b"NOTFOUND "
