"""DANE lookups (RFC 7672) through the configured, validating resolver.

The decisions are in ``mtasts.core.dane``; this module asks the DNS: the MX RRset, each
host's A/AAAA, each host's ``_25._tcp`` TLSA, every answer with its AD bit. The AD bit
is trusted from the configured resolver only, as Postfix trusts its own (README, DANE).
Like the other edges it takes plain values (the TTL bounds), not the configuration.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Awaitable, List, Optional, Tuple

from mtasts.core.dane import (
    DaneResult,
    DaneState,
    HostDane,
    HostState,
    Tlsa,
    after_mx_failure,
    bounded_ttl,
    domain_state,
    host_state,
    is_null_mx,
    tlsa_names,
)
from mtasts.core.nexthop import NextHop
from mtasts.net.dns import DnsLookups, Outcome, SecureAnswer

log = logging.getLogger("mtasts.net.dane")

# Postfix tries at most smtp_mx_address_limit (5) addresses; a few more hosts cost little.
MAX_MX_HOSTS = 16


class DaneChecker:
    """*failure_ttl*: how long a temporary failure holds; *min_ttl*/*max_ttl*: the bounds
    of a result's lifetime (``[cache] failure_ttl``, ``[dane] min_ttl``/``max_ttl``).
    A SIGHUP sets the attributes anew; each check reads them."""

    def __init__(self, dns_client: DnsLookups, failure_ttl: float, min_ttl: float, max_ttl: float) -> None:
        self._dns = dns_client
        self.failure_ttl = failure_ttl
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl

    async def check(
        self,
        hop: NextHop,
        now: float,
        previous: Optional[DaneResult] = None,
        mx_answer: Optional[Awaitable[SecureAnswer]] = None,
    ) -> DaneResult:
        """The DANE state of next hop *hop* as Postfix would see it: MX hosts at port 25 for a
        recipient domain, ``[host]:port`` without MX lookup (RFC 7672 §2.2.2, §3.2.2).
        *mx_answer*: the domain's MX query, if the caller started it early."""
        if not hop.mx:
            host, ttls = await self._host(hop.domain, hop.port)
            state = domain_state([host], previous)
            return self._result(state, now, (host,), ttls)
        domain = hop.domain
        mx = await (mx_answer if mx_answer is not None else self._dns.secure(domain, "MX"))
        if mx.temporary:
            state = after_mx_failure(previous)
            return DaneResult(
                state, now, now + self.failure_ttl, detail=f"MX lookup {mx.outcome.value} {mx.detail}".strip()
            )
        if mx.outcome is Outcome.RECORDS:
            exchanges = sorted((r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in mx.records)
            if is_null_mx([name for _pref, name in exchanges]):
                return DaneResult(DaneState.NULL_MX, now, now + self._ttl([mx.ttl]), detail="null MX (RFC 7505)")
            hosts = list(dict.fromkeys(name for _pref, name in exchanges))[:MAX_MX_HOSTS]
        elif mx.outcome is Outcome.NODATA:
            hosts = [domain]  # RFC 7672 §2.2.1: no MX, the domain is its own host
        else:
            return DaneResult(DaneState.UNSIGNED, now, now + self._ttl([mx.ttl]), detail="domain does not exist")
        if not mx.validated:
            return DaneResult(DaneState.UNSIGNED, now, now + self._ttl([mx.ttl]), detail="MX not DNSSEC-validated")
        checked = await asyncio.gather(*(self._host(h, hop.port) for h in hosts))
        states = tuple(h for h, _ttls in checked)
        ttls = [mx.ttl] + [t for _h, host_ttls in checked for t in host_ttls]
        return self._result(domain_state(states, previous), now, states, ttls)

    def _result(self, state: DaneState, now: float, hosts: Tuple[HostDane, ...], ttls: List[int]) -> DaneResult:
        retry = state in (DaneState.TEMPFAIL, DaneState.UNKNOWN)
        expires = now + (self.failure_ttl if retry else self._ttl(ttls))
        return DaneResult(state, now, expires, hosts)

    async def _host(self, host: str, port: int) -> Tuple[HostDane, List[int]]:
        a, aaaa = await asyncio.gather(self._dns.secure(host, "A"), self._dns.secure(host, "AAAA"))
        found = [x for x in (a, aaaa) if x.outcome is Outcome.RECORDS]
        ttls = [x.ttl for x in (a, aaaa) if not x.temporary]
        if any(x.temporary for x in (a, aaaa)):
            addresses_validated: Optional[bool] = None
        elif not found:
            # No address at all: Postfix cannot use this host; it does not make the domain DANE.
            return HostDane(host, HostState.NO_TLSA), ttls
        else:
            # The AD bit covers the whole CNAME chain (a validating resolver signs off on all of it).
            addresses_validated = all(x.validated for x in (a, aaaa))
        if not addresses_validated:
            return HostDane(host, host_state(addresses_validated, None, ())), ttls
        canonical = found[0].name
        for name in tlsa_names(host, canonical, port):
            tlsa = await self._dns.secure(name, "TLSA")
            if not tlsa.temporary:
                ttls.append(tlsa.ttl)
            if tlsa.outcome is Outcome.RECORDS or tlsa.temporary or not tlsa.validated:
                break  # found, failed, or insecure: Postfix stops here too
        records = tuple(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in tlsa.records)
        tlsa_validated: Optional[bool] = None if tlsa.temporary else tlsa.validated
        state = host_state(True, tlsa_validated, records)
        return HostDane(host, state, tuple(str(t) for t in records), name if records else ""), ttls

    def _ttl(self, ttls: List[int]) -> float:
        return bounded_ttl(ttls, self.min_ttl, self.max_ttl)


async def resolver_validates(dns: DnsLookups, probe: str) -> SecureAnswer:
    """Look up *probe* (a name known to be signed); its AD bit tells if the resolver validates."""
    return await dns.secure(probe, "SOA")


def non_loopback(nameservers: List[str]) -> List[str]:
    """Nameservers whose AD bit crosses a network unauthenticated."""
    out = []
    for ns in nameservers:
        try:
            if not ipaddress.ip_address(ns).is_loopback:
                out.append(ns)
        except ValueError:
            out.append(ns)
    return out
