"""DANE state of next hops (RFC 7672), tracked: one check per next hop at a time, its
result kept with the domain's cache entry (and so across restarts), a relay key's in
memory; each change of state logged and kept in the history.

The lookups are ``net.dane``'s, the decisions ``core.dane``'s, and where the result goes
among the answer's parts ``core.answer``'s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Callable, Dict, Optional

from cachetools import LRUCache

from mtasts.config import Config
from mtasts.core.dane import DaneResult
from mtasts.core.history import dane_change
from mtasts.core.nexthop import NextHop
from mtasts.errors import ResourceExhausted
from mtasts.logs import RateLimitedLog
from mtasts.net.dane import DaneChecker, non_loopback, resolver_validates
from mtasts.net.dns import DnsLookups, SecureAnswer, discard_result
from mtasts.resolver.counters import Counters
from mtasts.resolver.learning import Learning
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# DANE results of relay-shaped keys ([host]:port, host:port): few, kept in memory only.
RELAY_DANE_ENTRIES = 1024


class DaneTracker:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        dns: DnsLookups,
        learning: Learning,
        counters: Counters,
        faults: RateLimitedLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.dns = dns
        self._learning = learning
        self._counters = counters
        self._faults = faults
        self._clock = clock
        self.checker = DaneChecker(dns, config.cache.failure_ttl, config.dane.min_ttl, config.dane.max_ttl)
        self.inflight: Dict[NextHop, asyncio.Future[DaneResult]] = {}
        self._relay: LRUCache[NextHop, DaneResult] = LRUCache(RELAY_DANE_ENTRIES)

    def reconfigure(self, config: Config) -> None:
        self.checker.failure_ttl, self.checker.min_ttl, self.checker.max_ttl = (
            config.cache.failure_ttl,
            config.dane.min_ttl,
            config.dane.max_ttl,
        )

    def of_relay(self, hop: NextHop) -> Optional[DaneResult]:
        """The last result of a relay-shaped next hop (kept in memory only)."""
        return self._relay.get(hop)

    def known(self, hop: NextHop) -> Optional[DaneResult]:
        """The last DANE result of *hop*: the domain's, kept with its cache entry (and across
        restarts), or a relay key's, kept in memory."""
        if not hop.default:
            return self._relay.get(hop)
        entry = self.cache.peek(hop.domain)
        return entry.dane if entry is not None else None

    def check(
        self,
        hop: NextHop,
        mx_answer: Optional[asyncio.Future[SecureAnswer]] = None,
    ) -> asyncio.Future[DaneResult]:
        """Check *hop*'s DANE state now (one check per next hop at a time) and cache it."""
        future = self.inflight.get(hop)
        if future is None:
            future = asyncio.ensure_future(self._check(hop, mx_answer))
            self.inflight[hop] = future
            future.add_done_callback(lambda f: self._done(hop, f))
        return asyncio.shield(future)

    def early_mx(self, hop: NextHop) -> Optional[asyncio.Future[SecureAnswer]]:
        """The domain's MX query (DNSSEC flags set), started with discovery rather than after
        it when a DANE check may follow: the check then needs no round trip of its own for
        an unsigned domain. For a domain that turns out to have no MTA-STS answer the query
        is wasted, the one Postfix asks next for its delivery anyway (through the same local
        resolver, which then answers from its cache)."""
        known = self.known(hop)
        if known is not None and known.fresh(self._clock()):
            return None
        task = asyncio.ensure_future(self.dns.secure(hop.domain, "MX"))
        task.add_done_callback(discard_result)
        return task

    def _done(self, hop: NextHop, future: asyncio.Future[DaneResult]) -> None:
        self.inflight.pop(hop, None)
        if not future.cancelled() and isinstance(future.exception(), ResourceExhausted):
            self._faults.warning("%s: DANE check undecided: %s", hop.domain, future.exception())
        elif not future.cancelled() and future.exception() is not None:
            # Also reached by background re-checks, which nobody awaits.
            self._counters.internal_errors += 1
            log.error("%s: DANE check failed: %r", hop.domain, future.exception())

    async def _check(self, hop: NextHop, mx_answer: Optional[asyncio.Future[SecureAnswer]] = None) -> DaneResult:
        self._counters.dane_checks += 1
        previous = self.known(hop)
        result = await self.checker.check(hop, self._clock(), previous, mx_answer)
        if not hop.default:
            self._relay[hop] = result
        else:
            current = self.cache.peek(hop.domain)
            if current is not None:
                self.cache.put(replace(current, dane=result))
            change = dane_change(hop.domain, previous, result, self._clock())
            if change is not None:
                self._learning.changed(
                    [change], result.detail or "; ".join(f"{h.host} {h.state.value}" for h in result.hosts)
                )
        if previous is None or previous.state is not result.state:
            hosts = "; ".join(f"{h.host} {h.state.value}" for h in result.hosts)
            where = hop.domain if hop.default else (f"[{hop.domain}]" if not hop.mx else hop.domain) + f":{hop.port}"
            log.info(
                "%s: DANE %s%s%s",
                where,
                result.state.value,
                f" ({hosts})" if hosts else "",
                f": {result.detail}" if result.detail else "",
                extra={"domain": hop.domain, "outcome": "dane-" + result.state.value},
            )
        return result

    async def probe_validation(self, probe: str) -> None:
        """Say at start-up when DANE cannot work: the resolver does not validate (no AD bit)."""
        remote = non_loopback(self.dns.nameserver_addresses)
        if remote:
            log.warning(
                "DANE: nameserver %s is not on loopback: its AD bit crosses the network"
                " unauthenticated (use a local validating resolver such as unbound)",
                ", ".join(remote),
            )
        answer = await resolver_validates(self.dns, probe)
        if answer.validated:
            log.info("DANE: the resolver validates DNSSEC (AD bit for %r)", probe)
        else:
            log.warning(
                "DANE: no AD bit for %r (%s) from %s: this resolver does not validate DNSSEC, so no domain"
                " counts as DANE and MTA-STS answers stand; Postfix's own DANE needs a validating resolver too",
                probe,
                answer.outcome.value,
                ", ".join(self.dns.nameservers) or "the system resolver",
            )
