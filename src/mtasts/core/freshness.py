"""Cache decisions: what a lookup may answer from cache, and what must happen next.

Pure functions of a ``CacheEntry`` and ``now``. The rules (RFC 8461 §3.2, §3.3, §5.1,
§10.2):

* A policy is valid for ``max_age`` from its last successful fetch, never longer: an
  expired policy is not revived without a successful fetch (§3.3, §5.1).
* While valid it is answered without waiting on the network. Every ``txt_recheck``
  seconds a lookup triggers a background TXT check; a changed id triggers a fetch.
* A proactive refresh (fetch regardless of TXT) is due a day after the fetch, or at
  half the lifetime when ``max_age`` is shorter (§10.2), plus jitter.
* A failed or invalid fetch never replaces a valid policy (§3.3); the failure only
  postpones the next attempt (exponential back-off, capped).
* With no valid policy: "no MTA-STS here" is held for a while (negative TTL), and a
  failed discovery is held briefly, so the next lookups need no network.
* ``max_age: 0`` (the RFC is silent): the policy applies to the lookup that fetched it and is
  expired at once, so the next lookup discovers it again.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from mtasts.core.dane import DaneResult
from mtasts.core.policy import Mode, Policy

# RFC 8461 §10.2: refresh "daily"; shorter lifetimes refresh at half their age.
REFRESH_INTERVAL = 86400.0
# Jitter spreads refreshes of policies learned together (a restart, a burst).
REFRESH_JITTER = 0.1
# Back-off after failed refreshes: 5 min (RFC 8461 §3.3 suggests per-id back-off), doubling.
RETRY_MIN = 300.0
RETRY_MAX = 3600.0
# What an entry read back from a store or another host may say: values past these were not
# written by this code (its longest hold is [cache] negative_ttl_max, at most 30 days), so the
# entry is dropped, never applied: `hold_until: 1e308` would answer NOTFOUND for ever, and
# `failures: 1e400` TEMP on every host of a fleet.
MAX_FAILURES = 10**6
MAX_AHEAD = 31 * 86400.0  # a hold, a refresh, a DANE result: at most this far in the future
CLOCK_SKEW = 300.0  # how far another host's "fetched at" or "checked at" may be ahead of ours


class Hold(enum.Enum):
    """Why an entry without a valid policy answers "no policy" for a while."""

    NO_RECORD = "no-record"  # NXDOMAIN / NODATA / no v=STSv1 record
    INVALID_RECORD = "invalid-record"  # several STS records, or a malformed one
    DNS_FAILURE = "dns-failure"  # SERVFAIL, timeout: temporary
    FETCH_FAILURE = "fetch-failure"  # HTTPS failed or the body was invalid
    EXPIRED = "expired"  # the policy expired and could not be refetched


@dataclass(frozen=True)
class CachedPolicy:
    __slots__ = ("fetched_at", "policy", "policy_id")
    policy: Policy
    policy_id: str
    fetched_at: float

    @property
    def body(self) -> bytes:
        return self.policy.body

    @property
    def expires_at(self) -> float:
        return self.fetched_at + self.policy.max_age


@dataclass(frozen=True)
class CacheEntry:
    """Everything known about one Policy Domain (slotted: the memory tier holds 100k+)."""

    __slots__ = (
        "cached",
        "dane",
        "domain",
        "failures",
        "hold",
        "hold_until",
        "last_error",
        "refresh_at",
        "txt_checked_at",
    )
    domain: str
    cached: Optional[CachedPolicy]
    hold: Optional[Hold]
    hold_until: float
    txt_checked_at: float
    refresh_at: float
    failures: int  # consecutive failed refreshes or discoveries
    last_error: str
    dane: Optional[DaneResult]  # the last DANE check of the next hop (RFC 7672)

    def valid_policy(self, now: float) -> Optional[CachedPolicy]:
        cached = self.cached
        if cached is not None and now < cached.expires_at:
            return cached
        return None


class Background(enum.Enum):
    NOTHING = 0
    TXT_CHECK = 1  # query TXT; fetch only if the id changed
    REFRESH = 2  # fetch regardless of the TXT answer


@dataclass(frozen=True)
class Decision:
    """``discover``: nothing usable is cached, the lookup must wait for discovery.
    Otherwise answer ``cached`` (None: no policy) and start ``background``."""

    discover: bool
    cached: Optional[CachedPolicy] = None
    background: Background = Background.NOTHING

    @property
    def policy(self) -> Optional[Policy]:
        return self.cached.policy if self.cached is not None else None


DISCOVER = Decision(discover=True)
NO_POLICY = Decision(discover=False)


def decide(entry: Optional[CacheEntry], now: float, txt_recheck: float) -> Decision:
    if entry is None:
        return DISCOVER
    cached = entry.valid_policy(now)
    if cached is not None:
        if now >= entry.refresh_at:
            background = Background.REFRESH
        elif now - entry.txt_checked_at >= txt_recheck:
            background = Background.TXT_CHECK
        else:
            background = Background.NOTHING
        return Decision(False, cached, background)
    if entry.hold is not None and now < entry.hold_until:
        return NO_POLICY
    return DISCOVER


def refresh_time(fetched_at: float, max_age: int, jitter: float) -> float:
    """When to refresh a policy fetched at *fetched_at*; *jitter* in [0, 1)."""
    interval = min(REFRESH_INTERVAL, max_age / 2.0)
    return fetched_at + interval * (1.0 - REFRESH_JITTER * jitter)


# Doublings past this reach RETRY_MAX anyway; the cap keeps 2**n a small float for any count
# (2**1024 overflowed after 17 h of SERVFAIL with mail retried each minute: TEMP for ever).
_MAX_DOUBLINGS = 32


def retry_delay(failures: int) -> float:
    return min(RETRY_MAX, RETRY_MIN * 2.0 ** min(_MAX_DOUBLINGS, max(0, failures - 1)))


def hold_ttl(hold: Hold, txt_ttl: int, failures: int, negative: Tuple[float, float], failure_ttl: float) -> float:
    """How long discovery's "no policy" holds. No record: the TXT answer's (negative) TTL
    within ``[cache] negative_ttl_min/max``; a failed fetch: the per-id back-off (§3.3),
    *failures* counting this one; a DNS failure or an unusable record: ``failure_ttl``."""
    if hold is Hold.NO_RECORD:
        low, high = negative
        return min(max(float(txt_ttl), low), high)
    if hold is Hold.FETCH_FAILURE:
        return retry_delay(failures)
    return failure_ttl


def fetch_due(entry: CacheEntry, now: float) -> bool:
    """Whether a changed policy id may be fetched now: not while a failed fetch's back-off
    runs (RFC 8461 §3.3, per-id back-off). The entry does not record which id failed, so a
    new id that appears during the back-off of a failed refresh waits for it too (at most
    RETRY_MAX)."""
    return entry.failures == 0 or now >= entry.refresh_at


def learned(
    entry: Optional[CacheEntry],
    domain: str,
    policy: Policy,
    policy_id: str,
    now: float,
    jitter: float,
) -> CacheEntry:
    """A fetch succeeded: the new policy replaces whatever was cached (``none`` too, §8.3)."""
    cached = CachedPolicy(policy=policy, policy_id=policy_id, fetched_at=now)
    return CacheEntry(
        domain=domain,
        cached=cached,
        hold=None,
        hold_until=0.0,
        txt_checked_at=now,
        refresh_at=refresh_time(now, policy.max_age, jitter),
        failures=0,
        last_error="",
        dane=entry.dane if entry is not None else None,
    )


def txt_confirmed(entry: CacheEntry, now: float) -> CacheEntry:
    """The TXT check found the cached id (or no record, which keeps the policy, §3.3)."""
    return replace(entry, txt_checked_at=now)


def refresh_failed(entry: CacheEntry, now: float, error: str) -> CacheEntry:
    """A background fetch failed: keep the valid policy, retry later (§3.3)."""
    failures = entry.failures + 1
    return replace(
        entry,
        txt_checked_at=now,
        refresh_at=now + retry_delay(failures),
        failures=failures,
        last_error=error,
    )


def held(entry: Optional[CacheEntry], domain: str, hold: Hold, now: float, ttl: float, error: str = "") -> CacheEntry:
    """Discovery found no usable policy: answer "no policy" until ``now + ttl``.

    An expired policy is kept for ``cache show`` but is never answered again.
    """
    cached = entry.cached if entry is not None else None
    failures = (entry.failures if entry is not None else 0) + (hold is not Hold.NO_RECORD)
    return CacheEntry(
        domain=domain,
        cached=cached,
        hold=hold,
        hold_until=now + ttl,
        txt_checked_at=now,
        refresh_at=now + ttl,
        failures=failures,
        last_error=error,
        dane=entry.dane if entry is not None else None,
    )


def implausible(entry: CacheEntry, domain: str, now: Optional[float]) -> str:
    """Why *entry*, read back for *domain*, cannot be one this code wrote ("" when it can);
    with *now* None, only what needs no clock (a codec's check; the cache checks the rest)."""
    if entry.domain != domain:
        return f"the entry is for {entry.domain[:100]!r}"
    times = (entry.hold_until, entry.txt_checked_at, entry.refresh_at)
    if not all(isinstance(t, float) and math.isfinite(t) for t in times):
        return "a time that is no finite number"
    if not isinstance(entry.failures, int) or not 0 <= entry.failures <= MAX_FAILURES:
        return f"failures {entry.failures!r} out of 0..{MAX_FAILURES}"
    cached, dane = entry.cached, entry.dane
    if cached is not None and not (isinstance(cached.fetched_at, float) and math.isfinite(cached.fetched_at)):
        return "a fetch time that is no finite number"
    if dane is not None and not (math.isfinite(dane.checked_at) and math.isfinite(dane.expires_at)):
        return "a DANE time that is no finite number"
    if now is None:
        return ""
    if entry.hold_until > now + MAX_AHEAD or entry.refresh_at > now + MAX_AHEAD:
        return "a hold or refresh time too far ahead"
    if entry.txt_checked_at > now + CLOCK_SKEW:
        return "a TXT check in the future"
    if cached is not None and cached.fetched_at > now + CLOCK_SKEW:
        return "a policy fetched in the future"
    if dane is not None and (dane.checked_at > now + CLOCK_SKEW or dane.expires_at > now + MAX_AHEAD):
        return "a DANE result out of time"
    return ""


def needs_warning(entry: CacheEntry) -> bool:
    """RFC 8461 §10.2: alert on refresh failures, unless the cached mode is ``none``."""
    return entry.cached is not None and entry.cached.policy.mode is not Mode.NONE


def merged(local: Optional[CacheEntry], incoming: Optional[CacheEntry], now: float) -> Optional[CacheEntry]:
    """What a host keeps when another host's entry for the same domain arrives (the fleet).

    RFC 8461 §3.3: a valid cached policy is applied until it expires; no failure replaces
    it. So a valid policy wins over anything without one, a more recently fetched valid
    policy wins over an older one, and without a valid policy on either side the newer
    hold wins. The newer DANE result travels with the kept entry. None: keep *local*.
    """
    if incoming is None:
        return None
    if local is None:
        return incoming
    mine, theirs = local.valid_policy(now), incoming.valid_policy(now)
    if mine is not None and (theirs is None or theirs.fetched_at <= mine.fetched_at):
        keep = local
    elif theirs is not None or incoming.hold_until > local.hold_until:
        keep = incoming
    else:
        keep = local
    other = incoming if keep is local else local
    if other.dane is not None and (keep.dane is None or other.dane.checked_at > keep.dane.checked_at):
        keep = replace(keep, dane=other.dane)
    return None if keep is local else keep
