"""PolicyResolver in-process with a controllable clock, against the real DNS server and
HTTPS policy host: proactive refresh (RFC 8461 §10.2), warnings (§10.2), back-off."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import pytest

from mtasts.config import CacheSection, Config, Endpoint, FetchSection, ResolverSection
from mtasts.net.dns import DnsClient
from mtasts.net.fetch import PolicyFetcher
from mtasts.resolver import PolicyResolver
from mtasts.store.tiered import PolicyCache
from tests.support.policies import policy_text

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def run(world, tmp_path, scenario, **config):
    ca = tmp_path / "ca.pem"
    world.host.ca.cert_pem.write_to_path(str(ca))
    host, port = world.dns.address.split(":")
    cfg = Config(
        resolver=ResolverSection(nameservers=(Endpoint("inet", host, int(port)),), timeout=2.0),
        fetch=FetchSection(timeout=3.0),
        cache=CacheSection(backend="memory", **config),
    )

    async def main():
        dns_client = DnsClient(cfg.resolver.servers, cfg.resolver.timeout)
        fetcher = PolicyFetcher(dns_client, cfg.fetch.timeout, str(ca))
        await fetcher.start()
        clock = Clock()
        resolver = PolicyResolver(cfg, PolicyCache(1000), dns_client, fetcher, clock=clock, jitter=lambda: 0.0)
        await resolver.start()
        try:
            return await scenario(resolver, clock)
        finally:
            await resolver.close()
            await fetcher.close()

    try:
        return asyncio.run(main())
    finally:
        # aiohttp closes TLS connections with an SSL shutdown that can outlive this event
        # loop (it waits for the server's close_notify). Collect those sockets here, where
        # that is expected, instead of in whichever test the garbage collector hits next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


async def settle(resolver):
    await resolver.settle()


def test_e76_sweeper_refreshes_due_policies_without_lookups(world, tmp_path):
    d = world.new_domain()
    world.publish(d)

    async def scenario(resolver, clock):
        assert (await resolver.answer("postfix", d)).startswith(b"OK secure")
        assert resolver.sweep() == 0  # nothing due yet
        world.publish(d, policy_text(mx=("fresh.{d}",), domain=d))  # same id, new body
        clock.now += 86400  # a day later: due for the daily refresh
        assert resolver.sweep() == 1
        await settle(resolver)
        return resolver.answer_nowait("postfix", d), resolver.cache.get(d)

    reply, entry = run(world, tmp_path, scenario)
    assert reply == f"OK secure match=fresh.{d} servername=hostname".encode()
    assert world.fetches(d) == 2
    assert entry.cached.fetched_at == 1_800_000_000.0 + 86400


@pytest.mark.parametrize("mode,warned", [("enforce", True), ("testing", True), ("none", False)])
def test_e77_refresh_failure_warning_unless_none(world, tmp_path, caplog, mode, warned):
    d = world.new_domain()
    world.publish(d, policy_text(mode=mode, mx=() if mode == "none" else ("mx1.{d}",), domain=d))

    async def scenario(resolver, clock):
        await resolver.answer("postfix", d)
        world.host.sites[f"mta-sts.{d}"].status = 503
        clock.now += 86400
        resolver.sweep()
        await settle(resolver)
        return resolver.cache.get(d)

    with caplog.at_level(logging.INFO, logger="mtasts"):
        entry = run(world, tmp_path, scenario)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and d in r.getMessage()]
    assert bool(warnings) is warned
    if warned:
        assert "HTTP 503" in warnings[0].getMessage() and "keeping the cached policy until" in warnings[0].getMessage()
    assert entry.cached is not None and entry.failures == 1  # kept, with a retry scheduled
    assert entry.refresh_at == 1_800_000_000.0 + 86400 + 300


def test_b38_failed_fetch_backs_off_per_id(world, tmp_path):
    d = world.new_domain()
    world.publish(d, status=500)

    async def scenario(resolver, clock):
        assert await resolver.answer("postfix", d) == b"NOTFOUND "
        clock.now += 299
        assert resolver.answer_nowait("postfix", d) == b"NOTFOUND "  # held: no new fetch
        fetches = world.fetches(d)
        world.host.sites[f"mta-sts.{d}"].status = 200
        clock.now += 2
        assert resolver.answer_nowait("postfix", d) is None  # hold over: discover again
        return fetches, await resolver.answer("postfix", d)

    fetches, reply = run(world, tmp_path, scenario)
    assert fetches == 1
    assert reply.startswith(b"OK secure")


def test_e75_max_age_zero_applies_once(world, tmp_path):
    d = world.new_domain()
    world.publish(d, policy_text(max_age=0, domain=d))

    async def scenario(resolver, clock):
        first = await resolver.answer("postfix", d)
        return first, resolver.answer_nowait("postfix", d)

    first, second = run(world, tmp_path, scenario)
    assert first.startswith(b"OK secure")
    assert second is None  # expired at once: the next lookup discovers again


def test_negative_ttl_from_soa_clamped(world, tmp_path):
    d = world.new_domain()

    async def scenario(resolver, clock):
        await resolver.answer("postfix", d)
        return resolver.cache.get(d)

    world.dns.negative_ttl = 7200
    try:
        entry = run(world, tmp_path, scenario, negative_ttl_min=60.0, negative_ttl_max=1800.0)
    finally:
        world.dns.negative_ttl = 300
    assert entry.hold_until - entry.txt_checked_at == 1800.0


def test_a_changed_id_whose_fetch_fails_backs_off_instead_of_refetching_every_txt_check(world, tmp_path, caplog):
    # RFC 8461 §3.3: back off per policy id. A TXT check every txt_recheck (60 s) that sees
    # the new id again must not fetch it again before the back-off (5 min, doubling) is over.
    d = world.new_domain()
    world.publish(d)

    async def scenario(resolver, clock):
        await resolver.answer("postfix", d)
        world.set_id(d, "2")
        world.host.sites[f"mta-sts.{d}"].status = 500
        fetches = world.fetches(d)
        answers = set()
        for _minute in range(10):  # ten minutes of lookups, one a minute
            clock.now += 61
            answers.add(resolver.answer_nowait("postfix", d))
            await settle(resolver)
        return world.fetches(d) - fetches, answers, resolver.cache.get(d)

    with caplog.at_level(logging.INFO, logger="mtasts"):
        fetched, answers, entry = run(world, tmp_path, scenario)
    # At minute 1 (fails, retry in 300 s), then at minute 6 (fails, retry in 600 s): two.
    assert fetched == 2
    assert len(answers) == 1 and next(iter(answers)).startswith(b"OK secure")  # the cached policy meanwhile
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and d in r.getMessage()]
    assert len(warned) == 2 and "policy id changed to 2" in warned[0].getMessage()
    assert entry.failures == 2 and entry.cached.policy_id == "1"


def test_each_lookup_counts_once_as_a_hit_or_a_miss(world, tmp_path):
    # `cache stats`: internal reads (discovery, TXT checks, DANE) are not lookups.
    d = world.new_domain()
    world.publish(d)

    async def scenario(resolver, clock):
        assert resolver.answer_nowait("postfix", d) is None  # as the socketmap asks: a miss...
        assert (await resolver.answer("postfix", d)).startswith(b"OK secure")  # ...then discovery
        first = (resolver.cache.memory_hits, resolver.cache.misses)
        clock.now += 61  # due for a TXT check: the background read is no lookup either
        assert resolver.answer_nowait("postfix", d).startswith(b"OK secure")
        await settle(resolver)
        return first, (resolver.cache.memory_hits, resolver.cache.misses)

    first, second = run(world, tmp_path, scenario)
    assert first == (0, 1)
    assert second == (1, 1)
