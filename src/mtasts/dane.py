"""DANE lookups (RFC 7672) through the configured, validating resolver.

The decisions are in ``mtasts.core.dane``; this module asks the DNS: the MX RRset, each
host's A/AAAA, each host's ``_25._tcp`` TLSA, every answer with its AD bit. The AD bit
is trusted from the configured resolver only, as Postfix trusts its own (README, DANE).
"""

from __future__ import annotations

import asyncio
import logging
import ipaddress
from typing import List, Optional, Tuple

from mtasts.config import Config
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
)
from mtasts.net.dns import DnsClient, Outcome, SecureAnswer

log = logging.getLogger("mtasts.dane")

# Postfix tries at most smtp_mx_address_limit (5) addresses; a few more hosts cost little.
MAX_MX_HOSTS = 16


class DaneChecker:
    """Reads its bounds from ``config`` ([dane] min_ttl/max_ttl, [cache] failure_ttl) at each
    check, so a SIGHUP only has to hand it the new configuration."""

    def __init__(self, dns_client: DnsClient, config: Config) -> None:
        self._dns = dns_client
        self.config = config

    async def check(self, domain: str, now: float, previous: Optional[DaneResult] = None) -> DaneResult:
        mx = await self._dns.secure(domain, "MX")
        if mx.temporary:
            state = after_mx_failure(previous)
            return DaneResult(state, now, now + self.config.failure_ttl, detail=f"MX lookup {mx.outcome.value} {mx.detail}".strip())
        if mx.outcome is Outcome.RECORDS:
            exchanges = sorted((r.preference, r.exchange.to_text(omit_final_dot=True).lower()) for r in mx.records)
            if len(exchanges) == 1 and exchanges[0][1] in ("", "."):
                return DaneResult(DaneState.NULL_MX, now, now + self._ttl([mx.ttl]), detail="null MX (RFC 7505)")
            hosts = list(dict.fromkeys(name for _pref, name in exchanges if name))[:MAX_MX_HOSTS]
        elif mx.outcome is Outcome.NODATA:
            hosts = [domain]  # RFC 7672 §2.2.1: no MX, the domain is its own host
        else:
            return DaneResult(DaneState.UNSIGNED, now, now + self._ttl([mx.ttl]), detail="domain does not exist")
        if not mx.validated:
            return DaneResult(DaneState.UNSIGNED, now, now + self._ttl([mx.ttl]), detail="MX not DNSSEC-validated")
        checked = await asyncio.gather(*(self._host(h) for h in hosts))
        states = [h for h, _ttls in checked]
        ttls = [mx.ttl] + [t for _h, host_ttls in checked for t in host_ttls]
        state = domain_state(states)
        expires = now + (self.config.failure_ttl if state is DaneState.TEMPFAIL else self._ttl(ttls))
        return DaneResult(state, now, expires, tuple(states))

    async def _host(self, host: str) -> Tuple[HostDane, List[int]]:
        a, aaaa = await asyncio.gather(self._dns.secure(host, "A"), self._dns.secure(host, "AAAA"))
        found = [x for x in (a, aaaa) if x.outcome is Outcome.RECORDS]
        ttls = [x.ttl for x in (a, aaaa) if not x.temporary]
        if any(x.temporary for x in (a, aaaa)):
            addresses_validated: Optional[bool] = None
        elif not found:
            # No address at all: Postfix cannot use this host; it does not make the domain DANE.
            return HostDane(host, HostState.NO_TLSA), ttls
        else:
            addresses_validated = all(x.validated for x in (a, aaaa))
        if not addresses_validated:
            return HostDane(host, host_state(addresses_validated, None, ())), ttls
        tlsa = await self._dns.secure(f"_25._tcp.{host}", "TLSA")
        records = tuple(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert)) for r in tlsa.records)
        tlsa_validated: Optional[bool] = None if tlsa.temporary else tlsa.validated
        if not tlsa.temporary:
            ttls.append(tlsa.ttl)
        state = host_state(True, tlsa_validated, records)
        return HostDane(host, state, tuple(str(t) for t in records)), ttls

    def _ttl(self, ttls: List[int]) -> float:
        return bounded_ttl(ttls, self.config.dane_min_ttl, self.config.dane_max_ttl)

    async def resolver_validates(self, probe: str) -> SecureAnswer:
        """Look up *probe* (a name known to be signed); its AD bit tells if the resolver validates."""
        return await self._dns.secure(probe, "SOA")


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
