"""The resolver: what Postfix is answered, and how the cache stays right (RFC 8461 §3, §5).

``PolicyResolver`` is the face the socketmap and control servers, the daemon and the
commands see; behind it one room a job:

    answers     the hot path from the cache, and lookups that wait for the network
    discovery   a domain's publication: TXT, then the policy (also for query and check)
    discoverer  a new domain's discovery, one at a time per domain
    learning    what a discovery or refresh found: the cache entry, the history, the log
    overrides   exemptions: the file's, the command line's, the fleet's
    danetrack   DANE checks of next hops, one at a time each, their results kept
    upkeep      TXT re-checks, refreshes, the sweep, ``cache warm``
    counters    one snapshot for ``mtasts cache stats`` and ``/metrics``
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Callable, Dict, List, Optional, Union

from mtasts.config import Config
from mtasts.core.dane import DaneResult
from mtasts.core.freshness import CacheEntry
from mtasts.core.nexthop import NextHop
from mtasts.core.override import Override
from mtasts.core.policy import Policy
from mtasts.core.reply import MapProfile
from mtasts.logs import RateLimitedLog
from mtasts.net.dns import DnsLookups, SecureAnswer
from mtasts.net.fetch import PolicySource
from mtasts.resolver.answers import Answers
from mtasts.resolver.counters import Counters
from mtasts.resolver.danetrack import DaneTracker
from mtasts.resolver.discoverer import Discoverer, Found
from mtasts.resolver.learning import Learning
from mtasts.resolver.overrides import Overrides
from mtasts.resolver.upkeep import Upkeep
from mtasts.store.tiered import PolicyCache

__all__ = ["Counters", "PolicyResolver"]

log = logging.getLogger("mtasts.resolver")


class PolicyResolver:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        dns_client: DnsLookups,
        fetcher: PolicySource,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.cache = cache
        self._dns = dns_client
        self._clock = clock
        self.counters = Counters()
        faults = RateLimitedLog(log)  # local faults and floods: one bounded stream of WARNINGs
        self.learning = Learning(config, cache, counters=self.counters, clock=clock, jitter=jitter)
        self._overrides = Overrides(config, cache, self.counters)
        self.dane = DaneTracker(config, cache, dns_client, self.learning, self.counters, faults, clock)
        self.discoverer = Discoverer(
            cache, dns_client, fetcher, self.learning, self.counters, lambda: self.config.cache.txt_recheck, clock
        )
        self.upkeep = Upkeep(
            config,
            cache,
            dns_client,
            fetcher,
            self.discoverer,
            self.learning,
            self._overrides,
            self.counters,
            faults,
            clock,
        )
        self.answers = Answers(
            config, cache, self.counters, self._overrides, self.dane, self.discoverer, self.upkeep, faults, clock
        )
        self._probe: Optional[asyncio.Task[None]] = None
        self._started = False

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._started = True
        self.answers.start()
        self.upkeep.start()
        self.cache.on_override = self._overrides.fleet_changed
        for override in await self.cache.fleet_overrides():  # what the other hosts set
            self._overrides.fleet_changed(override.domain, override)
        if self.dane_answers():
            self._probe = asyncio.ensure_future(self.dane.probe_validation(self.config.dane.probe))
        self.cache.start()

    async def close(self) -> None:
        tasks: List[asyncio.Future[Any]] = self.upkeep.tasks_to_stop()
        tasks += list(self.discoverer.inflight.values()) + list(self.dane.inflight.values())
        tasks += [self._probe] if self._probe is not None else []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.cache.stop()

    async def settle(self) -> None:
        """Wait until no background work runs (re-checks, refreshes, DANE checks, discoveries
        and what the cache shares): for tests and ``cache warm``."""
        for _ in range(100):
            if self.idle():
                return
            tasks = list(self.upkeep.tasks.values()) + list(self.dane.inflight.values())
            tasks += list(self.discoverer.inflight.values()) + list(self.cache.in_background())
            await asyncio.gather(*tasks, return_exceptions=True)

    def idle(self) -> bool:
        return not (self.upkeep.tasks or self.dane.inflight or self.discoverer.inflight or self.cache.in_background())

    def now(self) -> float:
        """The resolver's clock (a test's fake one, else the time)."""
        return self._clock()

    def dane_answers(self) -> bool:
        """Whether any map profile may answer dane/dane-only (else no DANE lookups at all)."""
        profiles = list(self.config.maps.values()) + [self.config.default_profile]
        return self.config.dane.mode == "prefer" and any(p.dane for p in profiles)

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new profiles, timeouts, cache timings, DANE settings and the file's
        overrides; cache and stored overrides kept."""
        self.config = self.learning.config = self.upkeep.config = config
        self.answers.reconfigure(config)
        self._overrides.reconfigure(config)
        self._dns.set_timeout(config.resolver.timeout)
        self.dane.reconfigure(config)
        if self._probe is None and self._started and self.dane_answers():  # DANE answers turned on
            self._probe = asyncio.ensure_future(self.dane.probe_validation(config.dane.probe))

    # -- answering Postfix (answers) ---------------------------------------------------

    def profile(self, map_name: str) -> MapProfile:
        return self.answers.profile(map_name)

    def answer_nowait(self, map_name: str, key: str) -> Optional[bytes]:
        return self.answers.answer_nowait(map_name, key)

    def answer_later(self, map_name: str, key: str) -> Union[bytes, asyncio.Future[bytes]]:
        return self.answers.answer_later(map_name, key)

    async def answer(self, map_name: str, key: str) -> bytes:
        return await self.answers.answer(map_name, key)

    async def final_answer(
        self,
        entry: CacheEntry,
        policy: Optional[Policy],
        profile: MapProfile,
        recheck_dane: bool = False,
        hop: Optional[NextHop] = None,
        mx_answer: Optional[asyncio.Future[SecureAnswer]] = None,
    ) -> bytes:
        return await self.answers.final_answer(entry, policy, profile, recheck_dane, hop, mx_answer)

    def cached_answer(self, entry: CacheEntry, profile: MapProfile) -> Optional[bytes]:
        return self.answers.cached_answer(entry, profile)

    # -- exemptions (overrides) ----------------------------------------------------------

    @property
    def overrides(self) -> Dict[str, Override]:
        """The overrides by domain (the file's, the command line's, the fleet's)."""
        return self._overrides.table

    def override_in_force(self, domain: str, now: float) -> Optional[Override]:
        return self._overrides.in_force(domain, now)

    def add_override(self, override: Override) -> None:
        self._overrides.add(override)

    def remove_override(self, domain: str) -> bool:
        return self._overrides.remove(domain)

    def expire_overrides(self, now: float) -> None:
        self._overrides.expire(now)

    # -- discovery, upkeep, DANE ---------------------------------------------------------

    def discover(self, domain: str) -> asyncio.Future[Found]:
        return self.discoverer.discover(domain)

    def refresh_now(self, domain: str) -> asyncio.Future[Found]:
        return self.upkeep.refresh_now(domain)

    def sweep(self) -> int:
        return self.upkeep.sweep()

    async def warm(self, keys: List[str], concurrency: int) -> Dict[str, int]:
        return await self.upkeep.warm(keys, concurrency)

    def dane_check(self, hop: NextHop) -> asyncio.Future[DaneResult]:
        return self.dane.check(hop)

    async def purge(self, domain: str) -> bool:
        """Forget *domain* here and, with a shared tier, on every host of the fleet."""
        return await self.cache.forget(domain)

    async def purge_all(self) -> int:
        return await self.cache.forget_all()
