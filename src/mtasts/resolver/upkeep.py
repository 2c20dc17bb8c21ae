"""Keeping cached policies right in the background (RFC 8461 §3.3, §10.2): TXT re-checks a
lookup starts, refreshes the sweep starts, ``cache refresh`` and ``cache warm``.

A changed id is fetched; a missing TXT record never removes a valid policy (it is noted
once in the history); a failed fetch keeps the valid policy and backs off; an enforce
policy whose refresh fails is a WARNING. At most ``[cache] refresh_concurrency`` run at
once, and MAX_BACKGROUND are queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Set

from mtasts.config import Config
from mtasts.core import freshness
from mtasts.core.freshness import Background
from mtasts.core.history import record_gone
from mtasts.core.nexthop import policy_domain
from mtasts.core.policy import Mode
from mtasts.errors import ResourceExhausted
from mtasts.logs import RateLimitedLog
from mtasts.net.dns import DnsLookups, Outcome
from mtasts.net.fetch import PolicySource
from mtasts.resolver.counters import Counters
from mtasts.resolver.discoverer import Discoverer, Found
from mtasts.resolver.discovery import fetch_policy, read_record
from mtasts.resolver.learning import Learning
from mtasts.resolver.overrides import Overrides
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# How often the sweeper looks for policies due for a proactive refresh.
SWEEP_INTERVAL = 30.0
# Entries without a valid policy or hold are forgotten after a week.
PRUNE_AFTER = 7 * 86400.0
# Background upkeep tasks (TXT re-checks, refreshes) queued at once; beyond, the next lookup
# or sweep starts it.
MAX_BACKGROUND = 4096


class Upkeep:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        dns: DnsLookups,
        fetcher: PolicySource,
        discoverer: Discoverer,
        learning: Learning,
        overrides: Overrides,
        counters: Counters,
        faults: RateLimitedLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.cache = cache
        self.dns = dns
        self.fetcher = fetcher
        self._discoverer = discoverer
        self._learning = learning
        self._overrides = overrides
        self._counters = counters
        self._faults = faults
        self._clock = clock
        self.tasks: Dict[str, asyncio.Task[None]] = {}
        self._slots: Optional[asyncio.Semaphore] = None
        self._record_gone: Set[str] = set()  # domains whose missing TXT record is already noted
        self._sweeper: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._slots = asyncio.Semaphore(self.config.cache.refresh_concurrency)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())

    def tasks_to_stop(self) -> List[asyncio.Future[Any]]:
        tasks: List[asyncio.Future[Any]] = list(self.tasks.values())
        return tasks + ([self._sweeper] if self._sweeper is not None else [])

    def background(self, domain: str, kind: Background) -> None:
        """Start *kind* for *domain* unless one runs for it, or it is being discovered."""
        if domain in self.tasks or domain in self._discoverer.inflight or len(self.tasks) >= MAX_BACKGROUND:
            return
        task = asyncio.ensure_future(self._upkeep(domain, kind))
        self.tasks[domain] = task
        task.add_done_callback(lambda _t: self.tasks.pop(domain, None))

    def refresh_now(self, domain: str) -> asyncio.Future[Found]:
        """Forced refresh (``mtasts cache refresh``): a discovery that ignores the cache."""
        entry = self.cache.peek(domain)
        if entry is not None and entry.valid_policy(self._clock()) is not None:
            return asyncio.ensure_future(self._refresh_and_report(domain))
        return self._discoverer.discover(domain)

    async def _refresh_and_report(self, domain: str) -> Found:
        await self._upkeep(domain, Background.REFRESH, wait_for_slot=False)
        entry = self.cache.peek(domain)
        cached = entry.valid_policy(self._clock()) if entry else None
        return entry, cached.policy if cached else None  # type: ignore[return-value]

    async def _upkeep(self, domain: str, kind: Background, wait_for_slot: bool = True) -> None:
        assert self._slots is not None, "Upkeep.start() was not called"
        try:
            if wait_for_slot:
                async with self._slots:
                    await self._check(domain, kind)
            else:
                await self._check(domain, kind)
        except asyncio.CancelledError:
            raise
        except ResourceExhausted as exc:  # nothing learned, nothing changed: tried again later
            self._counters.resource_faults += 1
            self._faults.warning("%s: background %s undecided: %s", domain, kind.name.lower(), exc)
        except Exception:
            self._counters.internal_errors += 1
            log.exception("%s: background %s failed", domain, kind.name.lower())

    async def _check(self, domain: str, kind: Background) -> None:
        entry = self.cache.peek(domain)
        if entry is None or entry.valid_policy(self._clock()) is None:
            return  # purged or expired meanwhile: the next lookup discovers it
        cached = entry.cached
        assert cached is not None
        lookup = await read_record(self.dns, domain)
        record = lookup.record
        if record is None and lookup.txt.outcome is Outcome.RECORDS:
            log.debug("%s: TXT re-check: %s; keeping the cached policy", domain, lookup.error)
        if lookup.txt.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            if domain not in self._record_gone:  # once, not at every re-check
                self._record_gone.add(domain)
                self._learning.changed(
                    [record_gone(domain, cached, lookup.txt.outcome.value, self._clock())],
                    f"{lookup.name} {lookup.txt.outcome.value}; the cached policy stays in force until"
                    f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(cached.expires_at))} (RFC 8461 §3.3)",
                )
        elif record is not None:
            self._record_gone.discard(domain)
        changed = record is not None and record.policy_id != cached.policy_id
        if kind is Background.TXT_CHECK and (not changed or not freshness.fetch_due(entry, self._clock())):
            # Same id, or no usable record: a missing TXT never removes a cached policy (§3.3).
            # A changed id whose fetch failed waits for its back-off (§3.3), then the REFRESH.
            self.cache.put(freshness.txt_confirmed(self.cache.peek(domain) or entry, self._clock()), share=False)
            return
        fetch = await fetch_policy(self.fetcher, domain)
        self._learning.count(fetch)
        if fetch.result is not None:
            self._learning.learn(self.cache.peek(domain) or entry, domain, record, fetch.result)
            return
        current = self.cache.peek(domain) or entry
        failed = freshness.refresh_failed(current, self._clock(), str(fetch.error))
        self.cache.put(failed, share=False)
        self._counters.refresh_failed += 1
        if cached.policy.mode is Mode.ENFORCE:
            self._counters.refresh_failed_enforced += 1
        why = f"policy id changed to {record.policy_id}" if changed and record else "proactive refresh"
        if freshness.needs_warning(failed):
            log.warning(
                "%s: refresh of the %s policy failed (%s): %s; keeping the cached policy until %s",
                domain,
                cached.policy.mode.value,
                why,
                fetch.error,
                time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cached.expires_at)),
                extra={"outcome": "refresh-failed", "policy_id": cached.policy_id, "mode": cached.policy.mode.value},
            )

    async def _sweep_forever(self) -> None:
        interval = min(SWEEP_INTERVAL, self.config.cache.txt_recheck)
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
        for domain in self.cache.due(now, self.config.cache.refresh_concurrency * 4):
            if domain not in self.tasks:
                self.background(domain, Background.REFRESH)
                started += 1
        self.cache.prune(now - PRUNE_AFTER)
        self._overrides.expire(now)
        return started

    async def warm(self, keys: List[str], concurrency: int) -> Dict[str, int]:
        """Discover *keys* not yet cached (``cache warm``), *concurrency* at a time; how
        many ended in each state: ``cached`` (already valid), a policy mode, a hold reason,
        or ``invalid`` (no domain)."""
        outcome: Dict[str, int] = {}
        slots = asyncio.Semaphore(concurrency)

        async def one(key: str) -> None:
            domain = policy_domain(key)
            if domain is None:
                state = "invalid"
            elif self._valid_here(domain):
                state = "cached"
            else:
                async with slots:
                    entry, policy = await self._discoverer.discover(domain)
                state = policy.mode.value if policy is not None else (entry.hold.value if entry.hold else "expired")
            outcome[state] = outcome.get(state, 0) + 1

        await asyncio.gather(*(one(k) for k in keys))
        return outcome

    def _valid_here(self, domain: str) -> bool:
        entry = self.cache.peek(domain)
        return entry is not None and entry.valid_policy(self._clock()) is not None
