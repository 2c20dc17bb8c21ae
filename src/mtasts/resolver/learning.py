"""What a discovery or a refresh found, kept: the cache entry, the policy history, the log.

RFC 8461 §3.3: a fetched policy replaces what was cached (``none`` too, §8.3); with no
usable policy, a hold says why and for how long (``core.freshness``). Each change of a
known policy goes into its history; a downgrade is a WARNING.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable, List, Optional

from mtasts.config import Config
from mtasts.core import freshness
from mtasts.core.freshness import CacheEntry, Hold
from mtasts.core.history import Change, policy_changes
from mtasts.core.txtrecord import PolicyRecord
from mtasts.net.fetch import FetchResult
from mtasts.resolver.counters import Counters
from mtasts.resolver.discovery import Discovery, PolicyFetch
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")


class Learning:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        counters: Counters,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.cache = cache
        self.counters = counters
        self._clock = clock
        self._jitter = jitter

    def changed(self, changes: List[Change], evidence: str) -> None:
        """Keep *changes* in the domain's history, count them, and WARN of downgrades."""
        if not changes:
            return
        self.cache.add_changes(changes)
        for change in changes:
            self.counters.policy_changes[change.kind] = self.counters.policy_changes.get(change.kind, 0) + 1
            if change.downgrade:
                self.counters.downgrades += 1
                log.warning(
                    "%s: DOWNGRADE, %s %s -> %s (%s)",
                    change.domain,
                    change.kind,
                    change.old,
                    change.new,
                    evidence,
                    extra={"outcome": "downgrade"},
                )
            else:
                log.info(
                    "%s: %s changed: %s -> %s",
                    change.domain,
                    change.kind,
                    change.old,
                    change.new,
                    extra={"outcome": "change"},
                )

    def count(self, fetch: Optional[PolicyFetch]) -> None:
        if fetch is None:
            return
        self.counters.fetch_latency.observe(fetch.seconds)
        if fetch.error is None:
            self.counters.fetch_ok += 1
        else:
            self.counters.fetch_failed += 1
            kind = fetch.error.kind
            self.counters.by_failure[kind] = self.counters.by_failure.get(kind, 0) + 1

    def learn(
        self,
        entry: Optional[CacheEntry],
        domain: str,
        record: Optional[PolicyRecord],
        result: FetchResult,
        took: Optional[float] = None,
    ) -> CacheEntry:
        """A fetch succeeded: its policy replaces whatever was cached."""
        old = entry.cached if entry else None
        policy_id = record.policy_id if record else (old.policy_id if old else "")
        new = freshness.learned(entry, domain, result.policy, policy_id, self._clock(), self._jitter())
        self.cache.put(new)
        if old is not None:  # a first policy is no change (cache show has when it was fetched)
            assert new.cached is not None
            self.changed(policy_changes(domain, old, new.cached, self._clock()), result.url)
        policy = result.policy
        if not log.isEnabledFor(logging.INFO):
            return new  # the summary reads the mx patterns from the body again: not for nothing
        summary = (
            f"id {policy_id}, mode {policy.mode.value}, mx {','.join(p.text for p in policy.mx) or '-'},"
            f" max_age {policy.max_age}"
        )
        extra = {"policy_id": policy_id, "mode": policy.mode.value, "duration_ms": took}
        if old is None:
            log.info("%s: learned policy (%s)", domain, summary, extra=dict(extra, outcome="learned"))
        elif old.body != result.body or old.policy_id != policy_id:
            log.info("%s: policy changed (%s)", domain, summary, extra=dict(extra, outcome="changed"))
        else:
            log.debug("%s: policy refreshed, unchanged", domain, extra=dict(extra, outcome="refreshed"))
        return new

    def hold(self, entry: Optional[CacheEntry], domain: str, found: Discovery, took: float) -> CacheEntry:
        """A discovery found no usable policy: "no policy" for a while, and why."""
        hold = found.hold
        assert hold is not None
        cache = self.config.cache
        extra = {"outcome": hold.value, "duration_ms": took}
        failures = (entry.failures if entry else 0) + 1
        ttl = freshness.hold_ttl(
            hold, found.lookup.txt.ttl, failures, (cache.negative_ttl_min, cache.negative_ttl_max), cache.failure_ttl
        )
        if hold is Hold.DNS_FAILURE:
            txt = found.lookup.txt
            log.info(
                "%s: _mta-sts TXT lookup failed (%s %s); no policy for now",
                domain,
                txt.outcome.value,
                txt.detail,
                extra=extra,
            )
        elif hold is Hold.INVALID_RECORD:
            log.info("%s: unusable _mta-sts TXT record: %s", domain, found.error, extra=extra)
        elif hold is Hold.FETCH_FAILURE:
            log.info(
                "%s: policy fetch failed (%s); no policy for %d s",
                domain,
                found.error,
                ttl,  # §3.3 back-off
                extra=extra,
            )
        if hold is not Hold.NO_RECORD and entry is not None and entry.cached is not None:
            hold = Hold.EXPIRED if hold is Hold.FETCH_FAILURE else hold
        new = freshness.held(entry, domain, hold, self._clock(), ttl, found.error)
        self.cache.put(new)
        return new
