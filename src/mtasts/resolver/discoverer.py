"""A new domain's discovery, one at a time: concurrent lookups of a domain share one
discovery (``discovery.discover``); where there is a fleet another host's result comes
first; what was found is kept (``learning``)."""

from __future__ import annotations

import asyncio
import time
from typing import Callable, Dict, Optional, Tuple

from mtasts.core import freshness
from mtasts.core.freshness import CacheEntry
from mtasts.core.policy import Policy
from mtasts.net.dns import DnsLookups
from mtasts.net.fetch import PolicySource
from mtasts.resolver.counters import Counters
from mtasts.resolver.discovery import discover
from mtasts.resolver.learning import Learning
from mtasts.store.tiered import PolicyCache

Found = Tuple[CacheEntry, Optional[Policy]]  # the new cache entry, and the policy to apply now


class Discoverer:
    """Discovery of a domain nothing usable is cached for, one at a time per domain."""

    def __init__(
        self,
        cache: PolicyCache,
        dns: DnsLookups,
        fetcher: PolicySource,
        learning: Learning,
        counters: Counters,
        txt_recheck: Callable[[], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.dns = dns
        self.fetcher = fetcher
        self._learning = learning
        self._counters = counters
        self._txt_recheck = txt_recheck  # the configuration's, read at each use (SIGHUP changes it)
        self._clock = clock
        self.inflight: Dict[str, asyncio.Future[Found]] = {}

    def discover(self, domain: str) -> asyncio.Future[Found]:
        """Discover *domain* now, sharing one discovery among concurrent callers."""
        future = self.inflight.get(domain)
        if future is None:
            future = asyncio.ensure_future(self._discover(domain))
            self.inflight[domain] = future
            future.add_done_callback(lambda _f: self.inflight.pop(domain, None))
        return asyncio.shield(future)

    def answerable(self, entry: CacheEntry) -> bool:
        """Whether *entry* (from elsewhere) answers lookups now: a valid policy or a running hold."""
        return not freshness.decide(entry, self._clock(), self._txt_recheck()).discover

    async def _discover(self, domain: str) -> Found:
        self._counters.discoveries += 1
        started = time.perf_counter()
        entry = self.cache.peek(domain)
        cached = entry.valid_policy(self._clock()) if entry else None
        if cached is not None:  # learned meanwhile by a background task
            return entry, cached.policy  # type: ignore[return-value]
        known = await self.cache.recall(domain, self.answerable)  # another host's (a fleet)
        if known is not None:
            return known, freshness.decide(known, self._clock(), self._txt_recheck()).policy
        found = await discover(self.dns, self.fetcher, domain)
        self._learning.count(found.fetch)
        took = round((time.perf_counter() - started) * 1000, 1)
        if found.hold is None:
            assert found.fetch is not None and found.fetch.result is not None
            return self._learning.learn(entry, domain, found.lookup.record, found.fetch.result, took), found.policy
        return self._learning.hold(entry, domain, found, took), None
