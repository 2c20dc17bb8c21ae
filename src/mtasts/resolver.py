"""Discovery and cache upkeep: the asyncio side of the resolver.

``answer_nowait`` is the hot path: a cache decision and a formatted reply, no await.
Only a domain with nothing usable cached waits for ``discover`` (TXT query, then the
HTTPS fetch), and concurrent lookups of one domain share one discovery. TXT re-checks
and refreshes of cached policies run in the background, bounded by a semaphore.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Set, Tuple

from mtasts.config import Config
from mtasts.core import freshness
from mtasts.core.freshness import Background, CacheEntry, Hold
from mtasts.core.nexthop import policy_domain
from mtasts.core.policy import Policy
from mtasts.core.reply import MapProfile, cached_reply, tls_policy_reply
from mtasts.core.socketmap import NOTFOUND, Status, format_reply
from mtasts.core.txtrecord import PolicyRecord, select_record
from mtasts.errors import FetchError, RecordError
from mtasts.net.dns import DnsClient, Outcome
from mtasts.net.fetch import FetchResult, PolicyFetcher
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# How often the sweeper looks for policies due for a proactive refresh.
SWEEP_INTERVAL = 30.0
# Entries without a valid policy or hold are forgotten after a week.
PRUNE_AFTER = 7 * 86400.0


@dataclass
class Counters:
    lookups: int = 0
    answered_from_cache: int = 0
    discoveries: int = 0
    fetch_ok: int = 0
    fetch_failed: int = 0
    refresh_failed: int = 0
    internal_errors: int = 0
    by_failure: Dict[str, int] = field(default_factory=dict)


class PolicyResolver:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        dns_client: DnsClient,
        fetcher: PolicyFetcher,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.cache = cache
        self._dns = dns_client
        self._fetcher = fetcher
        self._clock = clock
        self._jitter = jitter
        self._inflight: Dict[str, "asyncio.Future[Tuple[CacheEntry, Optional[Policy]]]"] = {}
        self._background: Dict[str, "asyncio.Task[None]"] = {}
        self._semaphore: Optional[asyncio.Semaphore] = None
        self._sweeper: Optional["asyncio.Task[None]"] = None
        self._unknown_maps: Set[str] = set()
        self.counters = Counters()

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._semaphore = asyncio.Semaphore(self.config.refresh_concurrency)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    async def close(self) -> None:
        tasks = list(self._background.values()) + list(self._inflight.values())
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- answering Postfix ------------------------------------------------------------

    def profile(self, map_name: str) -> MapProfile:
        profile = self.config.profile(map_name)
        if profile is None:
            if map_name not in self._unknown_maps:
                self._unknown_maps.add(map_name)
                log.info("unknown map name %r: using the default profile", map_name)
            return self.config.default_profile
        return profile

    def answer_nowait(self, map_name: str, key: str) -> Optional[bytes]:
        """The reply if it needs no network, else None (the caller awaits ``answer``)."""
        self.counters.lookups += 1
        domain = policy_domain(key)
        if domain is None:
            return NOTFOUND
        decision = freshness.decide(self.cache.get(domain), self._clock(), self.config.txt_recheck)
        if decision.discover:
            return None
        self.counters.answered_from_cache += 1
        if decision.background is not Background.NOTHING:
            self._start_background(domain, decision.background)
        return cached_reply(domain, decision.cached, self.profile(map_name))

    async def answer(self, map_name: str, key: str) -> bytes:
        """The reply after discovery; never raises for remote faults."""
        domain = policy_domain(key)
        if domain is None:
            return NOTFOUND
        try:
            _entry, policy = await self.discover(domain)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Our bug or an unusable store: we cannot tell whether an enforced policy
            # exists, so this is the one case where deferring the mail is intended.
            self.counters.internal_errors += 1
            log.exception("internal error while looking up %s", domain)
            return format_reply(Status.TEMP, "mtasts internal error, see its log")
        return tls_policy_reply(domain, policy, self.profile(map_name))

    # -- discovery ------------------------------------------------------------------

    def discover(self, domain: str) -> "asyncio.Future[Tuple[CacheEntry, Optional[Policy]]]":
        """Discover *domain* now, sharing one discovery among concurrent callers.

        Resolves to the new cache entry and the policy to apply to this lookup.
        """
        future = self._inflight.get(domain)
        if future is None:
            future = asyncio.ensure_future(self._discover(domain))
            self._inflight[domain] = future
            future.add_done_callback(lambda _f: self._inflight.pop(domain, None))
        return asyncio.shield(future)

    async def _discover(self, domain: str) -> Tuple[CacheEntry, Optional[Policy]]:
        self.counters.discoveries += 1
        entry = self.cache.get(domain)
        now = self._clock()
        cached = entry.valid_policy(now) if entry else None
        if cached is not None:  # learned meanwhile by a background task
            return entry, cached.policy
        txt = await self._dns.txt("_mta-sts." + domain)
        now = self._clock()
        if txt.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            return self._hold(entry, domain, Hold.NO_RECORD, self._negative_ttl(txt.ttl), txt.outcome.value)
        if txt.temporary:
            log.info("%s: _mta-sts TXT lookup failed (%s %s); no policy for now", domain, txt.outcome.value, txt.detail)
            return self._hold(entry, domain, Hold.DNS_FAILURE, self.config.failure_ttl, f"dns {txt.outcome.value}")
        try:
            record = select_record(txt.texts)
        except RecordError as exc:
            if not any(t.startswith(b"v=STSv1") for t in txt.texts):
                return self._hold(entry, domain, Hold.NO_RECORD, self._negative_ttl(txt.ttl), str(exc))
            log.info("%s: unusable _mta-sts TXT record: %s", domain, exc)
            return self._hold(entry, domain, Hold.INVALID_RECORD, self.config.failure_ttl, str(exc))
        try:
            result = await self._fetch(domain)
        except FetchError as exc:
            failures = (entry.failures if entry else 0) + 1
            ttl = freshness.retry_delay(failures)  # §3.3: back off per policy id
            log.info("%s: policy fetch failed (%s); no policy for %d s", domain, exc, ttl)
            return self._hold(entry, domain, Hold.FETCH_FAILURE, ttl, str(exc))
        new = self._learn(entry, domain, record, result)
        return new, result.policy

    def _hold(self, entry, domain, hold, ttl, error) -> Tuple[CacheEntry, None]:
        if hold is not Hold.NO_RECORD and entry is not None and entry.cached is not None:
            hold = Hold.EXPIRED if hold is Hold.FETCH_FAILURE else hold
        new = freshness.held(entry, domain, hold, self._clock(), ttl, error)
        self.cache.put(new)
        return new, None

    def _negative_ttl(self, ttl: int) -> float:
        return min(max(float(ttl), self.config.negative_ttl_min), self.config.negative_ttl_max)

    async def _fetch(self, domain: str) -> FetchResult:
        try:
            result = await self._fetcher.fetch(domain)
        except FetchError as exc:
            self.counters.fetch_failed += 1
            self.counters.by_failure[exc.kind] = self.counters.by_failure.get(exc.kind, 0) + 1
            raise
        self.counters.fetch_ok += 1
        return result

    def _learn(
        self, entry: Optional[CacheEntry], domain: str, record: Optional[PolicyRecord], result: FetchResult
    ) -> CacheEntry:
        old = entry.cached if entry else None
        policy_id = record.policy_id if record else (old.policy_id if old else "")
        new = freshness.learned(entry, domain, result.policy, policy_id, result.body, self._clock(), self._jitter())
        self.cache.put(new)
        policy = result.policy
        summary = f"id {policy_id}, mode {policy.mode.value}, mx {','.join(p.text for p in policy.mx) or '-'}, max_age {policy.max_age}"
        if old is None:
            log.info("%s: learned policy (%s)", domain, summary)
        elif old.body != result.body or old.policy_id != policy_id:
            log.info("%s: policy changed (%s)", domain, summary)
        else:
            log.debug("%s: policy refreshed, unchanged", domain)
        return new

    # -- background upkeep -------------------------------------------------------------

    def _start_background(self, domain: str, kind: Background) -> None:
        if domain in self._background or domain in self._inflight:
            return
        task = asyncio.ensure_future(self._upkeep(domain, kind))
        self._background[domain] = task
        task.add_done_callback(lambda _t: self._background.pop(domain, None))

    def refresh_now(self, domain: str) -> "asyncio.Future[Tuple[CacheEntry, Optional[Policy]]]":
        """Forced refresh (``mtasts cache refresh``): a discovery that ignores the cache."""
        entry = self.cache.get(domain)
        if entry is not None and entry.valid_policy(self._clock()) is not None:
            return asyncio.ensure_future(self._refresh_and_report(domain))
        return self.discover(domain)

    async def _refresh_and_report(self, domain: str):
        await self._upkeep(domain, Background.REFRESH, wait_for_slot=False)
        entry = self.cache.get(domain)
        cached = entry.valid_policy(self._clock()) if entry else None
        return entry, cached.policy if cached else None

    async def _upkeep(self, domain: str, kind: Background, wait_for_slot: bool = True) -> None:
        assert self._semaphore is not None
        try:
            if wait_for_slot:
                async with self._semaphore:
                    await self._check(domain, kind)
            else:
                await self._check(domain, kind)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.counters.internal_errors += 1
            log.exception("%s: background %s failed", domain, kind.name.lower())

    async def _check(self, domain: str, kind: Background) -> None:
        entry = self.cache.get(domain)
        if entry is None or entry.valid_policy(self._clock()) is None:
            return  # purged or expired meanwhile: the next lookup discovers it
        cached = entry.cached
        assert cached is not None
        txt = await self._dns.txt("_mta-sts." + domain)
        record: Optional[PolicyRecord] = None
        if txt.outcome is Outcome.RECORDS:
            try:
                record = select_record(txt.texts)
            except RecordError as exc:
                log.debug("%s: TXT re-check: %s; keeping the cached policy", domain, exc)
        changed = record is not None and record.policy_id != cached.policy_id
        if kind is Background.TXT_CHECK and not changed:
            # Same id, or no usable record: a missing TXT never removes a cached policy (§3.3).
            self.cache.put(freshness.txt_confirmed(self.cache.get(domain) or entry, self._clock()))
            return
        try:
            result = await self._fetch(domain)
        except FetchError as exc:
            current = self.cache.get(domain) or entry
            failed = freshness.refresh_failed(current, self._clock(), str(exc))
            self.cache.put(failed)
            self.counters.refresh_failed += 1
            why = f"policy id changed to {record.policy_id}" if changed and record else "proactive refresh"
            if freshness.needs_warning(failed):
                log.warning(
                    "%s: refresh of the %s policy failed (%s): %s; keeping the cached policy until %s",
                    domain,
                    cached.policy.mode.value,
                    why,
                    exc,
                    time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cached.expires_at)),
                )
            return
        self._learn(self.cache.get(domain) or entry, domain, record, result)

    async def _sweep_forever(self) -> None:
        interval = min(SWEEP_INTERVAL, self.config.txt_recheck)
        while True:
            await asyncio.sleep(interval)
            try:
                self.sweep()
            except Exception:
                log.exception("refresh sweep failed")

    def sweep(self) -> int:
        """Start refreshes of policies due for one (RFC 8461 §10.2); return how many."""
        now = self._clock()
        started = 0
        for domain in self.cache.due(now, self.config.refresh_concurrency * 4):
            if domain not in self._background:
                self._start_background(domain, Background.REFRESH)
                started += 1
        self.cache.prune(now - PRUNE_AFTER)
        return started
