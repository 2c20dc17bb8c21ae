"""Policy discovery (RFC 8461 §3): from a domain to what its publication says.

One place asks for the ``_mta-sts`` TXT record, picks the record and fetches the policy;
the resolver (``discoverer`` for a new domain, ``read_record`` and ``fetch_policy`` for
its background re-checks), ``mtasts query`` and ``mtasts check`` all use it. The outcome
is typed: a policy, or the ``Hold`` that says why there is none, with what was seen on
the way (the TXT answer, the record or why it is unusable, the fetch error), so each
caller decides only what it does with it: cache it, print it, or judge it.

The DNS client and the policy fetcher are ``Protocol``s: the daemon passes the real
ones (``net.dns.DnsClient``, ``net.fetch.PolicyFetcher``); in-process tests pass small
fakes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from mtasts.core.freshness import Hold
from mtasts.core.policy import Policy
from mtasts.core.tagvalue import begins_with_version
from mtasts.core.txtrecord import VERSION, PolicyRecord, select_record
from mtasts.errors import FetchError, RecordError
from mtasts.net.dns import DnsLookups, Outcome, TxtAnswer
from mtasts.net.fetch import FetchResult, PolicySource


@dataclass(frozen=True)
class RecordLookup:
    """The ``_mta-sts`` TXT lookup and the one STS record in it (RFC 8461 §3.1)."""

    name: str
    txt: TxtAnswer
    record: Optional[PolicyRecord] = None
    error: str = ""  # why the answer holds no usable record
    seconds: float = 0.0

    @property
    def hold(self) -> Optional[Hold]:
        """Why no policy can be fetched on this record's word, None when it names an id."""
        if self.record is not None:
            return None
        if self.txt.temporary:
            return Hold.DNS_FAILURE
        if self.txt.outcome is Outcome.RECORDS and any(
            begins_with_version(t.decode("ascii", "replace"), VERSION) for t in self.txt.texts
        ):
            return Hold.INVALID_RECORD  # several STS records, or a malformed one
        return Hold.NO_RECORD  # NXDOMAIN, NODATA, or only other TXT records (discarded, §3.1)


@dataclass(frozen=True)
class PolicyFetch:
    """The HTTPS fetch of ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` (§3.3)."""

    result: Optional[FetchResult] = None
    error: Optional[FetchError] = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Discovery:
    """A whole discovery: the record lookup, and the fetch when one was made."""

    domain: str
    lookup: RecordLookup
    fetch: Optional[PolicyFetch] = None

    @property
    def policy(self) -> Optional[Policy]:
        return self.fetch.result.policy if self.fetch is not None and self.fetch.result is not None else None

    @property
    def hold(self) -> Optional[Hold]:
        """None when a policy was fetched, else why there is none."""
        if self.policy is not None:
            return None
        return self.lookup.hold or Hold.FETCH_FAILURE

    @property
    def error(self) -> str:
        if self.fetch is not None and self.fetch.error is not None:
            return str(self.fetch.error)
        return self.lookup.error


async def read_record(dns: DnsLookups, domain: str) -> RecordLookup:
    name = "_mta-sts." + domain
    started = time.perf_counter()
    txt = await dns.txt(name)
    seconds = time.perf_counter() - started
    if txt.temporary:
        return RecordLookup(name, txt, error=f"dns {txt.outcome.value} {txt.detail}".strip(), seconds=seconds)
    if txt.outcome is not Outcome.RECORDS:
        return RecordLookup(name, txt, error=txt.outcome.value, seconds=seconds)
    try:
        return RecordLookup(name, txt, select_record(txt.texts), seconds=seconds)
    except RecordError as exc:
        return RecordLookup(name, txt, error=str(exc), seconds=seconds)


async def fetch_policy(fetcher: PolicySource, domain: str) -> PolicyFetch:
    started = time.perf_counter()
    try:
        result = await fetcher.fetch(domain)
    except FetchError as exc:
        return PolicyFetch(error=exc, seconds=time.perf_counter() - started)
    return PolicyFetch(result=result, seconds=time.perf_counter() - started)


async def discover(dns: DnsLookups, fetcher: PolicySource, domain: str, always_fetch: bool = False) -> Discovery:
    """TXT, then (for a usable record) the policy. *always_fetch*: fetch even without a
    usable record, unless DNS failed (``mtasts check`` judges both on their own).

    Two round trips, not three: the policy host's A/AAAA lookup starts with the TXT query,
    so the fetch connects as soon as the record names an id. For a domain without MTA-STS
    that costs one A/AAAA lookup and nothing else: no connection is made to a host the
    domain does not publish (README, "first lookups")."""
    fetcher.prepare(domain)
    try:
        lookup = await read_record(dns, domain)
    except BaseException:  # a local fault (or a cancel): the prefetch must not outlive it
        fetcher.abandon(domain)
        raise
    if lookup.record is None and (not always_fetch or lookup.txt.temporary):
        fetcher.abandon(domain)
        return Discovery(domain, lookup)
    return Discovery(domain, lookup, await fetch_policy(fetcher, domain))
