"""Answering Postfix: the hot path from the cache, and the lookups that wait for the network.

``answer_nowait`` is a cache decision (``core.freshness.decide``), a memoised MTA-STS reply
and the answer rule (``core.answer.compose``): no await. Only a lookup with nothing usable
cached, or whose DANE state was never checked, waits: MAX_NETWORK_LOOKUPS at once, and
MAX_WAITING_LOOKUPS waiting, past which it answers TEMP at once. A local resource fault
answers TEMP too: undecided is never "no policy".
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, Optional, Set, Tuple, Union

from mtasts.config import Config
from mtasts.core import freshness
from mtasts.core.answer import DANE_UNKNOWN, compose, needs_dane
from mtasts.core.dane import DaneResult
from mtasts.core.freshness import Background, CachedPolicy, CacheEntry
from mtasts.core.nexthop import NextHop, next_hop, policy_domain
from mtasts.core.policy import Policy
from mtasts.core.reply import MapProfile, tls_policy_reply
from mtasts.core.socketmap import NOTFOUND, Status, format_reply
from mtasts.errors import ResourceExhausted
from mtasts.logs import RateLimitedLog
from mtasts.net.dns import SecureAnswer
from mtasts.resolver.counters import Counters
from mtasts.resolver.danetrack import DaneTracker
from mtasts.resolver.discoverer import Discoverer
from mtasts.resolver.overrides import Overrides
from mtasts.resolver.upkeep import Upkeep
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# Unknown map names remembered (each logged once); beyond, one WARNING and a counter only.
MAX_UNKNOWN_MAPS = 100
# Lookups that wait for the network (discovery, a first DANE check) at once: each holds a few
# sockets (TXT, A, AAAA, the HTTPS connection, TLSA queries). Postfix asks one lookup at a
# time per connection, so its own load stays far below; a client pipelining thousands of new
# domains no longer takes every descriptor and hundreds of MB (issue 24, 7).
MAX_NETWORK_LOOKUPS = 128
# Lookups waiting for one of those slots; a lookup beyond answers TEMP at once (Postfix
# retries it later): undecided, never "no policy".
MAX_WAITING_LOOKUPS = 4096


class ReplyMemo:
    """The answers already formatted, per domain and map profile: the hot path formats each
    answer once. Kept here, beside the cache, so the core's values stay immutable. An entry
    holds the cached policy and the profile it was made for and counts only for those very
    objects (a refreshed policy or a reloaded profile makes a new answer); one entry per
    domain for the first profile asked, another per further profile. Bounded: cleared when
    full, and refilled by the lookups that follow."""

    __slots__ = ("_limit", "_memo")

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


class Answers:
    def __init__(
        self,
        config: Config,
        cache: PolicyCache,
        counters: Counters,
        overrides: Overrides,
        dane: DaneTracker,
        discoverer: Discoverer,
        upkeep: Upkeep,
        faults: RateLimitedLog,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cache = cache
        self.counters = counters
        self._overrides = overrides
        self._dane = dane
        self._discoverer = discoverer
        self._upkeep = upkeep
        self._faults = faults
        self._clock = clock
        self.replies = ReplyMemo(max(1024, config.cache.memory_entries))
        self._unknown_maps: Set[str] = set()
        self._network: Optional[asyncio.Semaphore] = None
        self.waiting = 0  # lookups waiting for (or holding) a network slot
        self.reconfigure(config)

    def start(self) -> None:
        self._network = asyncio.Semaphore(MAX_NETWORK_LOOKUPS)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        # The settings every cached answer reads, one attribute away.
        self._txt_recheck = config.cache.txt_recheck
        self._dane_mode = config.dane.mode
        self._unknown_maps.clear()

    def profile(self, map_name: str) -> MapProfile:
        profile = self.config.profile(map_name)
        if profile is None:
            self.counters.unknown_map_lookups += 1
            if map_name not in self._unknown_maps and len(self._unknown_maps) <= MAX_UNKNOWN_MAPS:
                self._unknown_maps.add(map_name)
                if len(self._unknown_maps) > MAX_UNKNOWN_MAPS:
                    log.warning(
                        "more than %d unknown map names: no longer logging each (a client sending junk?);"
                        " they all get the default profile",
                        MAX_UNKNOWN_MAPS,
                    )
                else:
                    log.info("unknown map name %r: using the default profile", map_name[:100])
            return self.config.default_profile
        return profile

    def _map_label(self, map_name: str) -> str:
        # Bounded label values: configured map names; anything else is the default profile.
        return map_name if map_name in self.config.maps else "default"

    # -- from the cache ---------------------------------------------------------------

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
        override = self._overrides.applying(domain, now, sts) if self._overrides.table else None
        dane = None
        if needs_dane(sts, override, self._dane_mode, profile.dane):  # RFC 8461 §2: never override DANE
            assert entry is not None
            hop = None if domain is key else next_hop(key)
            dane = entry.dane if hop is None or hop.default else self._dane.of_relay(hop)
            if dane is None:
                return None  # the first time, answer() waits for the DANE check
            if not dane.fresh(now):
                self._dane.check(hop or NextHop(domain))  # answer from the last result meanwhile
        reply = compose(sts, override, self._dane_mode, profile.dane, dane)
        assert isinstance(reply, bytes)
        self.counters.answered_from_cache += 1
        if decision.background is not Background.NOTHING:
            self._upkeep.background(domain, decision.background)
        return self.counters.answered(self._map_label(map_name), reply)

    def cached_answer(self, entry: CacheEntry, profile: MapProfile) -> Optional[bytes]:
        """What a lookup of *entry*'s domain answers from the cache alone (``cache export``);
        None where that answer waits for a DANE check never made (RFC 8461 §2: an MTA-STS
        answer written down without it could override DANE)."""
        now = self._clock()
        sts = self.replies.reply(entry.domain, entry.valid_policy(now), profile)
        answer = compose(sts, self._overrides.in_force(entry.domain, now), self._dane_mode, profile.dane, entry.dane)
        return None if answer is DANE_UNKNOWN else answer  # type: ignore[return-value]

    # -- after the network -------------------------------------------------------------

    def answer_later(self, map_name: str, key: str) -> Union[bytes, asyncio.Future[bytes]]:
        """The reply of a lookup ``answer_nowait`` could not answer: a future of it, or at once
        TEMP when MAX_WAITING_LOOKUPS already wait (no task is made for a lookup refused:
        a client pipelining thousands of new domains gets its TEMPs without a task each)."""
        if self.waiting >= MAX_WAITING_LOOKUPS:
            self.counters.busy += 1
            self._faults.warning(
                "%d lookups already wait for the network: answering TEMP for %r (a client pipelining new domains?)",
                self.waiting,
                key[:100],
            )
            return self.counters.answered(
                self._map_label(map_name), format_reply(Status.TEMP, "mtasts busy, try again later")
            )
        self.waiting += 1
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
            self.waiting -= 1
        return self.counters.answered(self._map_label(map_name), reply)

    async def _answer(self, map_name: str, key: str) -> bytes:
        hop = next_hop(key)
        if hop is None:
            return NOTFOUND
        domain = hop.domain
        profile = self.profile(map_name)
        try:
            mx_answer = self._early_mx(hop, profile)
            entry, policy = await self._discoverer.discover(domain)
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

    def _early_mx(self, hop: NextHop, profile: MapProfile) -> Optional[asyncio.Future[SecureAnswer]]:
        if not hop.mx or hop.domain in self._discoverer.inflight or hop in self._dane.inflight:
            return None  # a relay key (no MX), or another lookup already started it all
        if self.config.dane.mode != "prefer" or not profile.dane:
            return None
        return self._dane.early_mx(hop)

    async def final_answer(
        self,
        entry: CacheEntry,
        policy: Optional[Policy],
        profile: MapProfile,
        recheck_dane: bool = False,
        hop: Optional[NextHop] = None,
        mx_answer: Optional[asyncio.Future[SecureAnswer]] = None,
    ) -> bytes:
        """The answer for *entry* after discovery: the (memoised) MTA-STS answer, unless DANE
        applies; the DANE result of *hop* (default: the domain's MX hosts on port 25) is used
        while fresh, else (or when asked) re-checked (with *mx_answer* if one was started)."""
        # discover() hands back the policy of entry.cached, or None for a hold.
        sts = self.replies.reply(entry.domain, entry.cached if policy is not None else None, profile)
        override = self._overrides.applying(entry.domain, self._clock(), sts) if self._overrides.table else None
        dane: Optional[DaneResult] = None
        if needs_dane(sts, override, self.config.dane.mode, profile.dane):
            hop = hop or NextHop(entry.domain)
            known = self._dane.known(hop) if not hop.default else entry.dane
            dane = None if recheck_dane else known
            if dane is None or not dane.fresh(self._clock()):
                dane = await self._dane.check(hop, mx_answer)
        answer = compose(sts, override, self.config.dane.mode, profile.dane, dane)
        assert isinstance(answer, bytes), "a DANE check was made"
        return answer
