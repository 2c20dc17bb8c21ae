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
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from cachetools import LRUCache

from mtasts.config import Config
from mtasts.core import freshness
from mtasts.core.answer import DANE_UNKNOWN, compose, needs_dane
from mtasts.core.dane import DaneResult
from mtasts.core.freshness import Background, CachedPolicy, CacheEntry, Hold
from mtasts.core.history import Change, dane_change, policy_changes, record_gone
from mtasts.core.latency import LatencyHistogram
from mtasts.core.nexthop import NextHop, next_hop, policy_domain
from mtasts.core.override import Override
from mtasts.core.policy import Mode, Policy
from mtasts.core.reply import MapProfile, tls_policy_reply
from mtasts.core.socketmap import NOTFOUND, Status, format_reply
from mtasts.core.txtrecord import PolicyRecord
from mtasts.discovery import Discovery, PolicyFetch, discover, fetch_policy, read_record
from mtasts.errors import ResourceExhausted
from mtasts.logs import RateLimitedLog
from mtasts.net.dane import DaneChecker, non_loopback, resolver_validates
from mtasts.net.dns import DnsLookups, Outcome, SecureAnswer, discard_result
from mtasts.net.fetch import FetchResult, PolicySource
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# How often the sweeper looks for policies due for a proactive refresh.
SWEEP_INTERVAL = 30.0
# Entries without a valid policy or hold are forgotten after a week.
PRUNE_AFTER = 7 * 86400.0
# Unknown map names remembered (each logged once); beyond, one WARNING and a counter only.
MAX_UNKNOWN_MAPS = 100
# An override in force is logged (WARNING) once per domain in this many seconds, not per lookup.
OVERRIDE_LOG_EVERY = 600.0
# DANE results of relay-shaped keys ([host]:port, host:port): few, kept in memory only.
RELAY_DANE_ENTRIES = 1024
# Lookups that wait for the network (discovery, a first DANE check) at once: each holds a few
# sockets (TXT, A, AAAA, the HTTPS connection, TLSA queries). Postfix asks one lookup at a
# time per connection, so its own load stays far below; a client pipelining thousands of new
# domains no longer takes every descriptor and hundreds of MB (issue 24, 7).
MAX_NETWORK_LOOKUPS = 128
# Lookups waiting for one of those slots; a lookup beyond answers TEMP at once (Postfix
# retries it later): undecided, never "no policy".
MAX_WAITING_LOOKUPS = 4096
# Background upkeep tasks (TXT re-checks, refreshes) queued at once; beyond, the next lookup
# or sweep starts it.
MAX_BACKGROUND = 4096


@dataclass
class Counters:
    lookups: int = 0
    answered_from_cache: int = 0
    discoveries: int = 0
    fetch_ok: int = 0
    fetch_failed: int = 0
    refresh_failed: int = 0
    internal_errors: int = 0
    dane_checks: int = 0
    refresh_failed_enforced: int = 0
    unknown_map_lookups: int = 0
    override_answers: int = 0
    resource_faults: int = 0  # lookups answered TEMP for EMFILE, ENOBUFS, ENOMEM
    busy: int = 0  # lookups answered TEMP: MAX_WAITING_LOOKUPS were already waiting
    # change kind ("id", "mode", "mx", "max_age", "txt-gone", "dane") -> changes seen
    policy_changes: Dict[str, int] = field(default_factory=dict)
    downgrades: int = 0
    by_failure: Dict[str, int] = field(default_factory=dict)
    # (map, the answer's first 12 bytes, which name its kind) -> answers given
    answers: Dict[Tuple[str, bytes], int] = field(default_factory=dict)
    fetch_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def answered(self, map_name: str, reply: bytes) -> bytes:
        key = (map_name, reply[:12])
        self.answers[key] = self.answers.get(key, 0) + 1
        return reply


class ReplyMemo:
    """The answers already formatted, per domain and map profile: the hot path formats each
    answer once. Kept here, beside the cache, so the core's values stay immutable. An entry
    holds the cached policy and the profile it was made for and counts only for those very
    objects (a refreshed policy or a reloaded profile makes a new answer); one entry per
    domain for the first profile asked, another per further profile. Bounded: cleared when
    full, and refilled by the lookups that follow."""

    __slots__ = ("_memo", "_limit")

    def __init__(self, limit: int) -> None:
        self._memo: Dict[Any, Tuple[CachedPolicy, MapProfile, bytes]] = {}
        self._limit = limit

    def reply(self, domain: str, cached: Optional[CachedPolicy], profile: MapProfile) -> bytes:
        if cached is None:
            return NOTFOUND
        hit = self._memo.get(domain)
        if hit is not None and hit[0] is cached and hit[1] is profile:
            return hit[2]
        key: Any = domain
        if hit is not None and hit[0] is cached:  # the same policy, another profile
            key = (domain, id(profile))
            other = self._memo.get(key)
            if other is not None and other[0] is cached and other[1] is profile:
                return other[2]
        reply = tls_policy_reply(domain, cached.policy, profile)
        if len(self._memo) >= self._limit:
            self._memo.clear()
            key = domain
        self._memo[key] = (cached, profile, reply)
        return reply

    def __len__(self) -> int:
        return len(self._memo)


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
        self._fetcher = fetcher
        self._clock = clock
        self._jitter = jitter
        self._inflight: Dict[str, "asyncio.Future[Tuple[CacheEntry, Optional[Policy]]]"] = {}
        self._dane_inflight: Dict[NextHop, "asyncio.Future[DaneResult]"] = {}
        self._relay_dane: "LRUCache[NextHop, DaneResult]" = LRUCache(RELAY_DANE_ENTRIES)
        self._dane = DaneChecker(dns_client, config.cache.failure_ttl, config.dane.min_ttl, config.dane.max_ttl)
        self._background: Dict[str, "asyncio.Task[None]"] = {}
        self._semaphore: Optional[asyncio.Semaphore] = None
        self._sweeper: Optional["asyncio.Task[None]"] = None
        self._probe: Optional["asyncio.Task[None]"] = None
        self._unknown_maps: Set[str] = set()
        self.counters = Counters()
        self.replies = ReplyMemo(max(1024, config.cache.memory_entries))
        self._hot_settings(config)
        # Exemptions: the file's, then the stored ones (mtasts override add) over them.
        self.overrides: Dict[str, Override] = dict(config.overrides)
        self.overrides.update((o.domain, o) for o in cache.overrides())
        self._override_logged: Dict[str, float] = {}
        self._record_gone: Set[str] = set()  # domains whose missing TXT record is already noted
        self._network: Optional[asyncio.Semaphore] = None
        self._waiting = 0  # lookups in answer(), running or waiting for a network slot
        self._faults = RateLimitedLog(log)

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._semaphore = asyncio.Semaphore(self.config.cache.refresh_concurrency)
        self._network = asyncio.Semaphore(MAX_NETWORK_LOOKUPS)
        self.cache.on_override = self._override_changed
        for override in await self.cache.fleet_overrides():  # what the other hosts set
            self._override_changed(override.domain, override)
        self._sweeper = asyncio.ensure_future(self._sweep_forever())
        if self.dane_answers():
            self._probe = asyncio.ensure_future(self._probe_validation())
        self.cache.start()

    async def _probe_validation(self) -> None:
        """Say at start-up when DANE cannot work: the resolver does not validate (no AD bit)."""
        remote = non_loopback(self._dns.nameserver_addresses)
        if remote:
            log.warning("DANE: nameserver %s is not on loopback: its AD bit crosses the network"
                        " unauthenticated (use a local validating resolver such as unbound)", ", ".join(remote))
        probe = self.config.dane.probe
        answer = await resolver_validates(self._dns, probe)
        if answer.validated:
            log.info("DANE: the resolver validates DNSSEC (AD bit for %r)", probe)
        else:
            log.warning(
                "DANE: no AD bit for %r (%s) from %s: this resolver does not validate DNSSEC, so no domain"
                " counts as DANE and MTA-STS answers stand; Postfix's own DANE needs a validating resolver too",
                probe, answer.outcome.value, ", ".join(self._dns.nameservers) or "the system resolver",
            )

    async def close(self) -> None:
        tasks = list(self._background.values()) + list(self._inflight.values()) + list(self._dane_inflight.values())
        tasks += [t for t in (self._sweeper, self._probe) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.cache.stop()

    def now(self) -> float:
        """The resolver's clock (a test's fake one, else the time)."""
        return self._clock()

    def dane_answers(self) -> bool:
        """Whether any map profile may answer dane/dane-only (else no DANE lookups at all)."""
        profiles = list(self.config.maps.values()) + [self.config.default_profile]
        return self.config.dane.mode == "prefer" and any(p.dane for p in profiles)

    def _hot_settings(self, config: Config) -> None:
        # The settings every cached answer reads, one attribute away.
        self._txt_recheck = config.cache.txt_recheck
        self._dane_mode = config.dane.mode

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new profiles, timeouts, cache timings, DANE settings and the file's
        overrides; cache and stored overrides kept."""
        self.config = config
        self._hot_settings(config)
        stored = {d: o for d, o in self.overrides.items() if o.source == "cli"}
        self.overrides = {**config.overrides, **stored}
        self._dns.set_timeout(config.resolver.timeout)
        self._dane.failure_ttl, self._dane.min_ttl, self._dane.max_ttl = (
            config.cache.failure_ttl, config.dane.min_ttl, config.dane.max_ttl)
        self._unknown_maps.clear()
        if self._probe is None and self._semaphore is not None and self.dane_answers():
            self._probe = asyncio.ensure_future(self._probe_validation())  # DANE answers turned on

    # -- answering Postfix ------------------------------------------------------------

    def profile(self, map_name: str) -> MapProfile:
        profile = self.config.profile(map_name)
        if profile is None:
            self.counters.unknown_map_lookups += 1
            if map_name not in self._unknown_maps and len(self._unknown_maps) <= MAX_UNKNOWN_MAPS:
                self._unknown_maps.add(map_name)
                if len(self._unknown_maps) > MAX_UNKNOWN_MAPS:
                    log.warning("more than %d unknown map names: no longer logging each (a client sending junk?);"
                                " they all get the default profile", MAX_UNKNOWN_MAPS)
                else:
                    log.info("unknown map name %r: using the default profile", map_name[:100])
            return self.config.default_profile
        return profile

    def answer_nowait(self, map_name: str, key: str) -> Optional[bytes]:
        """The reply if it needs no network, else None (the caller awaits ``answer``)."""
        self.counters.lookups += 1
        domain = policy_domain(key)
        if domain is None:
            return self.counters.answered(self._map_label(map_name), NOTFOUND)
        entry = self.cache.get(domain)  # the one read that counts as a lookup's hit or miss
        now = self._clock()
        decision = freshness.decide(entry, now, self._txt_recheck)
        if decision.discover:
            return None
        profile = self.profile(map_name)
        sts = self.replies.reply(domain, decision.cached, profile)
        override = self._override(domain, now, sts) if self.overrides else None
        dane = None
        if needs_dane(sts, override, self._dane_mode, profile.dane):  # RFC 8461 §2: never override DANE
            assert entry is not None
            hop = None if domain is key else next_hop(key)
            dane = entry.dane if hop is None or hop.default else self._relay_dane.get(hop)
            if dane is None:
                return None  # the first time, answer() waits for the DANE check
            if not dane.fresh(now):
                self.dane_check(hop or NextHop(domain))  # answer from the last result meanwhile
        reply = compose(sts, override, self._dane_mode, profile.dane, dane)
        assert isinstance(reply, bytes)
        self.counters.answered_from_cache += 1
        if decision.background is not Background.NOTHING:
            self._start_background(domain, decision.background)
        return self.counters.answered(self._map_label(map_name), reply)

    # -- history ------------------------------------------------------------------------

    def _changed(self, changes: "List[Change]", evidence: str) -> None:
        """Keep *changes* in the domain's history, count them, and WARN of downgrades."""
        if not changes:
            return
        self.cache.add_changes(changes)
        for change in changes:
            self.counters.policy_changes[change.kind] = self.counters.policy_changes.get(change.kind, 0) + 1
            if change.downgrade:
                self.counters.downgrades += 1
                log.warning("%s: DOWNGRADE, %s %s -> %s (%s)", change.domain, change.kind, change.old, change.new,
                            evidence, extra={"outcome": "downgrade"})
            else:
                log.info("%s: %s changed: %s -> %s", change.domain, change.kind, change.old, change.new,
                         extra={"outcome": "change"})

    # -- exemptions ---------------------------------------------------------------------

    def _override(self, domain: str, now: float, instead_of: bytes) -> Optional[Override]:
        """*domain*'s override in force, or None; an expired one is removed. Its use is logged
        (WARNING, with the MTA-STS answer *instead_of*) once per OVERRIDE_LOG_EVERY."""
        override = self.overrides.get(domain)
        if override is None:
            return None
        if not override.active(now):
            self._expired(override)
            return None
        self.counters.override_answers += 1
        if now - self._override_logged.get(domain, -OVERRIDE_LOG_EVERY) >= OVERRIDE_LOG_EVERY:
            self._override_logged[domain] = now
            until = "no end" if override.until is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(override.until))
            log.warning("%s: override in force (%s until %s%s, from %s: %s): answering %r instead of %r", domain,
                        override.level, until, ", also over DANE" if override.dane else "", override.source,
                        override.reason, override.level, instead_of.decode(errors="replace").strip(),
                        extra={"outcome": "override"})
        return override

    def override_in_force(self, domain: str, now: float) -> Optional[Override]:
        """*domain*'s override in force, read only (no expiry, no count, no log: ``cache export``)."""
        override = self.overrides.get(domain)
        return override if override is not None and override.active(now) else None

    def _override_changed(self, domain: str, override: Optional[Override]) -> None:
        """Another host of the fleet added, changed or removed *domain*'s override."""
        current = self.overrides.get(domain)
        if current is not None and current.source != "cli":
            return  # this host's configuration file decides for this domain
        self._override_logged.pop(domain, None)
        if override is None:
            if self.overrides.pop(domain, None) is not None:
                log.warning("%s: override removed (by another host of the fleet)", domain)
        elif override != current:
            self.overrides[domain] = override
            log.warning("%s: override from another host of the fleet (%s, %s)", domain, override.level,
                        override.reason)

    def _expired(self, override: Override) -> None:
        self.overrides.pop(override.domain, None)
        self._override_logged.pop(override.domain, None)
        if override.source == "cli":
            self.cache.delete_override(override.domain)
        log.warning("%s: override (%s, %s) expired: the domain's own policy applies again", override.domain,
                    override.level, override.reason)

    def add_override(self, override: Override) -> None:
        self.overrides[override.domain] = override
        self._override_logged.pop(override.domain, None)  # the next use is logged at once
        self.cache.put_override(override)
        log.warning("%s: override added (%s until %s, %s)", override.domain, override.level,
                    time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(override.until or 0)), override.reason)

    def remove_override(self, domain: str) -> bool:
        removed = self.cache.delete_override(domain)
        override = self.overrides.get(domain)
        if override is not None and override.source == "cli":
            del self.overrides[domain]
            removed = True
        if removed:
            log.warning("%s: override removed", domain)
        return removed

    def expire_overrides(self, now: float) -> None:
        for override in list(self.overrides.values()):
            if not override.active(now):
                self._expired(override)

    async def warm(self, keys: "List[str]", concurrency: int) -> Dict[str, int]:
        """Discover *keys* not yet cached (``cache warm``), *concurrency* at a time; how
        many ended in each state: ``cached`` (already valid), a policy mode, a hold reason,
        or ``invalid`` (no domain)."""
        outcome: Dict[str, int] = {}
        slots = asyncio.Semaphore(concurrency)

        async def one(key: str) -> None:
            domain = policy_domain(key)
            if domain is None:
                state = "invalid"
            elif self._answerable_here(domain):
                state = "cached"
            else:
                async with slots:
                    entry, policy = await self.discover(domain)
                state = policy.mode.value if policy is not None else (entry.hold.value if entry.hold else "expired")
            outcome[state] = outcome.get(state, 0) + 1

        await asyncio.gather(*(one(k) for k in keys))
        return outcome

    def _answerable_here(self, domain: str) -> bool:
        entry = self.cache.peek(domain)
        return entry is not None and entry.valid_policy(self._clock()) is not None

    def cached_answer(self, entry: CacheEntry, profile: MapProfile) -> Optional[bytes]:
        """What a lookup of *entry*'s domain answers from the cache alone (``cache export``);
        None where that answer waits for a DANE check never made (RFC 8461 §2: an MTA-STS
        answer written down without it could override DANE)."""
        now = self._clock()
        sts = self.replies.reply(entry.domain, entry.valid_policy(now), profile)
        answer = compose(sts, self.override_in_force(entry.domain, now), self._dane_mode, profile.dane, entry.dane)
        return None if answer is DANE_UNKNOWN else answer  # type: ignore[return-value]

    def _map_label(self, map_name: str) -> str:
        # Bounded label values: configured map names; anything else is the default profile.
        return map_name if map_name in self.config.maps else "default"

    def answer_later(self, map_name: str, key: str) -> "Union[bytes, asyncio.Future[bytes]]":
        """The reply of a lookup ``answer_nowait`` could not answer: a future of it, or at once
        TEMP when MAX_WAITING_LOOKUPS already wait (no task is made for a lookup refused:
        a client pipelining thousands of new domains gets its TEMPs without a task each)."""
        if self._waiting >= MAX_WAITING_LOOKUPS:
            self.counters.busy += 1
            self._faults.warning("%d lookups already wait for the network: answering TEMP for %r (a client"
                                 " pipelining new domains?)", self._waiting, key[:100])
            return self.counters.answered(self._map_label(map_name),
                                          format_reply(Status.TEMP, "mtasts busy, try again later"))
        self._waiting += 1
        return asyncio.ensure_future(self._answer_waiting(map_name, key))

    async def answer(self, map_name: str, key: str) -> bytes:
        """The reply after discovery; never raises for remote faults."""
        later = self.answer_later(map_name, key)
        return later if isinstance(later, bytes) else await later

    async def _answer_waiting(self, map_name: str, key: str) -> bytes:
        try:
            if self._network is None:  # not started (tests that drive answer() alone)
                reply = await self._answer(map_name, key)
            else:
                async with self._network:
                    reply = await self._answer(map_name, key)
        finally:
            self._waiting -= 1
        return self.counters.answered(self._map_label(map_name), reply)

    async def _answer(self, map_name: str, key: str) -> bytes:
        hop = next_hop(key)
        if hop is None:
            return NOTFOUND
        domain = hop.domain
        profile = self.profile(map_name)
        try:
            mx_answer = self._early_mx(hop, profile)
            entry, policy = await self.discover(domain)
            reply = await self.final_answer(entry, policy, profile, hop=hop, mx_answer=mx_answer)
        except asyncio.CancelledError:
            raise
        except ResourceExhausted as exc:
            # Undecided here, not "no policy": NOTFOUND would downgrade an enforced domain.
            self.counters.resource_faults += 1
            self._faults.warning("%s: lookup undecided, answering TEMP: %s", domain, exc)
            return format_reply(Status.TEMP, "mtasts out of local resources, see its log")
        except Exception:
            # Our bug or an unusable store: we cannot tell whether an enforced policy
            # exists, so this is the one case where deferring the mail is intended.
            self.counters.internal_errors += 1
            log.exception("internal error while looking up %s", domain)
            return format_reply(Status.TEMP, "mtasts internal error, see its log")
        return reply

    def _early_mx(self, hop: NextHop, profile: MapProfile) -> "Optional[asyncio.Future[SecureAnswer]]":
        """The domain's MX query (DNSSEC flags set), started with discovery rather than after
        it when a DANE check may follow: the check then needs no round trip of its own for
        an unsigned domain. For a domain that turns out to have no MTA-STS answer the query
        is wasted, the one Postfix asks next for its delivery anyway (through the same local
        resolver, which then answers from its cache)."""
        if not hop.mx or hop.domain in self._inflight or hop in self._dane_inflight:
            return None  # a relay key (no MX), or another lookup already started it all
        if self.config.dane.mode != "prefer" or not profile.dane:
            return None
        known = self._known_dane(hop)
        if known is not None and known.fresh(self._clock()):
            return None
        task = asyncio.ensure_future(self._dns.secure(hop.domain, "MX"))
        task.add_done_callback(discard_result)
        return task

    async def final_answer(
        self, entry: CacheEntry, policy: Optional[Policy], profile: MapProfile, recheck_dane: bool = False,
        hop: Optional[NextHop] = None, mx_answer: "Optional[asyncio.Future[SecureAnswer]]" = None,
    ) -> bytes:
        """The answer for *entry* after discovery: the (memoised) MTA-STS answer, unless DANE
        applies; the DANE result of *hop* (default: the domain's MX hosts on port 25) is used
        while fresh, else (or when asked) re-checked (with *mx_answer* if one was started)."""
        # discover() hands back the policy of entry.cached, or None for a hold.
        sts = self.replies.reply(entry.domain, entry.cached if policy is not None else None, profile)
        override = self._override(entry.domain, self._clock(), sts) if self.overrides else None
        dane: Optional[DaneResult] = None
        if needs_dane(sts, override, self.config.dane.mode, profile.dane):
            hop = hop or NextHop(entry.domain)
            known = entry.dane if hop.default else self._relay_dane.get(hop)
            dane = None if recheck_dane else known
            if dane is None or not dane.fresh(self._clock()):
                dane = await self.dane_check(hop, mx_answer)
        answer = compose(sts, override, self.config.dane.mode, profile.dane, dane)
        assert isinstance(answer, bytes), "a DANE check was made"
        return answer

    # -- DANE -----------------------------------------------------------------------

    def _known_dane(self, hop: NextHop) -> Optional[DaneResult]:
        """The last DANE result of *hop*: the domain's, kept with its cache entry (and across
        restarts), or a relay key's, kept in memory."""
        if not hop.default:
            return self._relay_dane.get(hop)
        entry = self.cache.peek(hop.domain)
        return entry.dane if entry is not None else None

    def dane_check(self, hop: NextHop, mx_answer: "Optional[asyncio.Future[SecureAnswer]]" = None,
                   ) -> "asyncio.Future[DaneResult]":
        """Check *hop*'s DANE state now (one check per next hop at a time) and cache it."""
        future = self._dane_inflight.get(hop)
        if future is None:
            future = asyncio.ensure_future(self._check_dane(hop, mx_answer))
            self._dane_inflight[hop] = future
            future.add_done_callback(lambda f: self._dane_done(hop, f))
        return asyncio.shield(future)

    def _dane_done(self, hop: NextHop, future: "asyncio.Future[DaneResult]") -> None:
        self._dane_inflight.pop(hop, None)
        if not future.cancelled() and isinstance(future.exception(), ResourceExhausted):
            self._faults.warning("%s: DANE check undecided: %s", hop.domain, future.exception())
        elif not future.cancelled() and future.exception() is not None:
            # Also reached by background re-checks, which nobody awaits.
            self.counters.internal_errors += 1
            log.error("%s: DANE check failed: %r", hop.domain, future.exception())

    async def _check_dane(self, hop: NextHop, mx_answer: "Optional[asyncio.Future[SecureAnswer]]" = None,
                          ) -> DaneResult:
        self.counters.dane_checks += 1
        previous = self._known_dane(hop)
        result = await self._dane.check(hop, self._clock(), previous, mx_answer)
        if not hop.default:
            self._relay_dane[hop] = result
        else:
            current = self.cache.peek(hop.domain)
            if current is not None:
                self.cache.put(replace(current, dane=result))
            change = dane_change(hop.domain, previous, result, self._clock())
            if change is not None:
                self._changed([change], result.detail or "; ".join(f"{h.host} {h.state.value}" for h in result.hosts))
        if previous is None or previous.state is not result.state:
            hosts = "; ".join(f"{h.host} {h.state.value}" for h in result.hosts)
            where = hop.domain if hop.default else (f"[{hop.domain}]" if not hop.mx else hop.domain) + f":{hop.port}"
            log.info("%s: DANE %s%s%s", where, result.state.value, f" ({hosts})" if hosts else "",
                     f": {result.detail}" if result.detail else "",
                     extra={"domain": hop.domain, "outcome": "dane-" + result.state.value})
        return result

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
        started = time.perf_counter()
        entry = self.cache.peek(domain)
        cached = entry.valid_policy(self._clock()) if entry else None
        if cached is not None:  # learned meanwhile by a background task
            return entry, cached.policy
        known = await self.cache.recall(domain, self._answerable)  # another host's (a fleet)
        if known is not None:
            return known, freshness.decide(known, self._clock(), self.config.cache.txt_recheck).policy
        found = await discover(self._dns, self._fetcher, domain)
        self._count(found.fetch)
        took = round((time.perf_counter() - started) * 1000, 1)
        if found.hold is None:
            assert found.fetch is not None and found.fetch.result is not None
            return self._learn(entry, domain, found.lookup.record, found.fetch.result, took), found.policy
        return self._hold(entry, domain, found, took), None

    def _answerable(self, entry: CacheEntry) -> bool:
        """Whether *entry* (from elsewhere) answers lookups now: a valid policy or a running hold."""
        return not freshness.decide(entry, self._clock(), self.config.cache.txt_recheck).discover

    def _hold(self, entry: Optional[CacheEntry], domain: str, found: Discovery, took: float) -> CacheEntry:
        hold = found.hold
        assert hold is not None
        extra = {"outcome": hold.value, "duration_ms": took}
        failures = (entry.failures if entry else 0) + 1
        ttl = freshness.hold_ttl(hold, found.lookup.txt.ttl, failures,
                                 (self.config.cache.negative_ttl_min, self.config.cache.negative_ttl_max), self.config.cache.failure_ttl)
        if hold is Hold.DNS_FAILURE:
            txt = found.lookup.txt
            log.info("%s: _mta-sts TXT lookup failed (%s %s); no policy for now", domain, txt.outcome.value, txt.detail,
                     extra=extra)
        elif hold is Hold.INVALID_RECORD:
            log.info("%s: unusable _mta-sts TXT record: %s", domain, found.error, extra=extra)
        elif hold is Hold.FETCH_FAILURE:
            log.info("%s: policy fetch failed (%s); no policy for %d s", domain, found.error, ttl,  # §3.3 back-off
                     extra=extra)
        if hold is not Hold.NO_RECORD and entry is not None and entry.cached is not None:
            hold = Hold.EXPIRED if hold is Hold.FETCH_FAILURE else hold
        new = freshness.held(entry, domain, hold, self._clock(), ttl, found.error)
        self.cache.put(new)
        return new

    async def purge(self, domain: str) -> bool:
        """Forget *domain* here and, with a shared tier, on every host of the fleet."""
        return await self.cache.forget(domain)

    async def purge_all(self) -> int:
        return await self.cache.forget_all()

    def _count(self, fetch: Optional[PolicyFetch]) -> None:
        if fetch is None:
            return
        self.counters.fetch_latency.observe(fetch.seconds)
        if fetch.error is None:
            self.counters.fetch_ok += 1
        else:
            self.counters.fetch_failed += 1
            kind = fetch.error.kind
            self.counters.by_failure[kind] = self.counters.by_failure.get(kind, 0) + 1

    def _learn(
        self, entry: Optional[CacheEntry], domain: str, record: Optional[PolicyRecord], result: FetchResult,
        took: Optional[float] = None,
    ) -> CacheEntry:
        old = entry.cached if entry else None
        policy_id = record.policy_id if record else (old.policy_id if old else "")
        new = freshness.learned(entry, domain, result.policy, policy_id, self._clock(), self._jitter())
        self.cache.put(new)
        if old is not None:  # a first policy is no change (cache show has when it was fetched)
            assert new.cached is not None
            self._changed(policy_changes(domain, old, new.cached, self._clock()), result.url)
        policy = result.policy
        if not log.isEnabledFor(logging.INFO):
            return new  # the summary reads the mx patterns from the body again: not for nothing
        summary = f"id {policy_id}, mode {policy.mode.value}, mx {','.join(p.text for p in policy.mx) or '-'}, max_age {policy.max_age}"
        extra = {"policy_id": policy_id, "mode": policy.mode.value, "duration_ms": took}
        if old is None:
            log.info("%s: learned policy (%s)", domain, summary, extra=dict(extra, outcome="learned"))
        elif old.body != result.body or old.policy_id != policy_id:
            log.info("%s: policy changed (%s)", domain, summary, extra=dict(extra, outcome="changed"))
        else:
            log.debug("%s: policy refreshed, unchanged", domain, extra=dict(extra, outcome="refreshed"))
        return new

    # -- background upkeep -------------------------------------------------------------

    def _start_background(self, domain: str, kind: Background) -> None:
        if domain in self._background or domain in self._inflight or len(self._background) >= MAX_BACKGROUND:
            return
        task = asyncio.ensure_future(self._upkeep(domain, kind))
        self._background[domain] = task
        task.add_done_callback(lambda _t: self._background.pop(domain, None))

    def refresh_now(self, domain: str) -> "asyncio.Future[Tuple[CacheEntry, Optional[Policy]]]":
        """Forced refresh (``mtasts cache refresh``): a discovery that ignores the cache."""
        entry = self.cache.peek(domain)
        if entry is not None and entry.valid_policy(self._clock()) is not None:
            return asyncio.ensure_future(self._refresh_and_report(domain))
        return self.discover(domain)

    async def _refresh_and_report(self, domain: str):
        await self._upkeep(domain, Background.REFRESH, wait_for_slot=False)
        entry = self.cache.peek(domain)
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
        except ResourceExhausted as exc:  # nothing learned, nothing changed: tried again later
            self.counters.resource_faults += 1
            self._faults.warning("%s: background %s undecided: %s", domain, kind.name.lower(), exc)
        except Exception:
            self.counters.internal_errors += 1
            log.exception("%s: background %s failed", domain, kind.name.lower())

    async def _check(self, domain: str, kind: Background) -> None:
        entry = self.cache.peek(domain)
        if entry is None or entry.valid_policy(self._clock()) is None:
            return  # purged or expired meanwhile: the next lookup discovers it
        cached = entry.cached
        assert cached is not None
        lookup = await read_record(self._dns, domain)
        record = lookup.record
        if record is None and lookup.txt.outcome is Outcome.RECORDS:
            log.debug("%s: TXT re-check: %s; keeping the cached policy", domain, lookup.error)
        if lookup.txt.outcome in (Outcome.NXDOMAIN, Outcome.NODATA):
            if domain not in self._record_gone:  # once, not at every re-check
                self._record_gone.add(domain)
                self._changed([record_gone(domain, cached, lookup.txt.outcome.value, self._clock())],
                              f"{lookup.name} {lookup.txt.outcome.value}; the cached policy stays in force until"
                              f" {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(cached.expires_at))} (RFC 8461 §3.3)")
        elif record is not None:
            self._record_gone.discard(domain)
        changed = record is not None and record.policy_id != cached.policy_id
        if kind is Background.TXT_CHECK and (not changed or not freshness.fetch_due(entry, self._clock())):
            # Same id, or no usable record: a missing TXT never removes a cached policy (§3.3).
            # A changed id whose fetch failed waits for its back-off (§3.3), then the REFRESH.
            self.cache.put(freshness.txt_confirmed(self.cache.peek(domain) or entry, self._clock()), share=False)
            return
        fetch = await fetch_policy(self._fetcher, domain)
        self._count(fetch)
        if fetch.result is not None:
            self._learn(self.cache.peek(domain) or entry, domain, record, fetch.result)
            return
        current = self.cache.peek(domain) or entry
        failed = freshness.refresh_failed(current, self._clock(), str(fetch.error))
        self.cache.put(failed, share=False)
        self.counters.refresh_failed += 1
        if cached.policy.mode is Mode.ENFORCE:
            self.counters.refresh_failed_enforced += 1
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
            if domain not in self._background:
                self._start_background(domain, Background.REFRESH)
                started += 1
        self.cache.prune(now - PRUNE_AFTER)
        self.expire_overrides(now)
        return started
