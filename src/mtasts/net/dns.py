"""DNS through dnspython's async resolver: TXT discovery and host addresses.

One ``DnsClient`` serves discovery and the HTTPS connector (``DnsConnectorResolver``),
so one DNS configuration governs everything. dnspython keeps no cache here: the
policy cache decides what to remember.
"""

from __future__ import annotations

import asyncio
import enum
import socket
from dataclasses import dataclass
from typing import Any, Dict, List, Protocol, Sequence, Tuple

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rdatatype
import dns.resolver
from aiohttp.abc import AbstractResolver

from mtasts.config import Nameserver
from mtasts.errors import ConfigError

# Answer for negative lookups when the response carries no SOA (RFC 2308 §5).
DEFAULT_NEGATIVE_TTL = 900


class Outcome(enum.Enum):
    RECORDS = "records"
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, no TXT
    SERVFAIL = "servfail"  # temporary: the servers failed or refused
    TIMEOUT = "timeout"  # temporary: no answer in time


@dataclass(frozen=True)
class TxtAnswer:
    outcome: Outcome
    texts: Tuple[bytes, ...] = ()  # one item per RR, its strings joined (RFC 8461 §3.1)
    ttl: int = 0  # positive: the RRset TTL; negative: the SOA-derived TTL
    detail: str = ""

    @property
    def temporary(self) -> bool:
        return self.outcome in (Outcome.SERVFAIL, Outcome.TIMEOUT)


@dataclass(frozen=True)
class SecureAnswer:
    outcome: Outcome
    records: Tuple[Any, ...] = ()
    ttl: int = 0
    validated: bool = False  # the AD bit: the resolver validated the answer (or the denial)
    detail: str = ""
    name: str = ""  # the owner after CNAMEs (the canonical name), without the final dot

    @property
    def temporary(self) -> bool:
        return self.outcome in (Outcome.SERVFAIL, Outcome.TIMEOUT)


class DnsLookups(Protocol):
    """What discovery, DANE and the resolver ask of DNS; ``DnsClient`` is the real one."""

    @property
    def nameservers(self) -> List[str]: ...

    @property
    def nameserver_addresses(self) -> List[str]: ...

    def set_timeout(self, timeout: float) -> None: ...

    async def txt(self, name: str) -> TxtAnswer: ...

    async def query(self, name: str, rdtype: str) -> Tuple[Outcome, List[Any], str]: ...

    async def secure(self, name: str, rdtype: str) -> "SecureAnswer": ...


class DnsClient:
    def __init__(self, nameservers: Sequence[Nameserver], timeout: float) -> None:
        try:
            resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigError(
                f"[resolver] nameservers: empty, and the system resolver configuration is unusable ({exc})"
            ) from None
        if nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(ns.address, ns.port) for ns in nameservers]
        resolver.lifetime = timeout
        resolver.timeout = min(timeout, 2.0)  # per-server try; lifetime bounds the whole lookup
        resolver.cache = None
        self._resolver = resolver
        # DNSSEC lookups (DANE): DO and AD set, so a validating resolver reports validation
        # in the AD bit (RFC 6840 §5.7). Only these queries pay for the larger answers.
        secure = dns.asyncresolver.Resolver(configure=False)
        secure.nameservers = resolver.nameservers
        secure.lifetime, secure.timeout, secure.cache = resolver.lifetime, resolver.timeout, None
        secure.use_edns(0, dns.flags.DO, 1232)
        secure.flags = dns.flags.RD | dns.flags.AD
        self._secure = secure

    def set_timeout(self, timeout: float) -> None:
        for resolver in (self._resolver, self._secure):
            resolver.lifetime = timeout
            resolver.timeout = min(timeout, 2.0)

    @property
    def nameservers(self) -> List[str]:
        return [str(ns) for ns in self._resolver.nameservers]

    @property
    def nameserver_addresses(self) -> List[str]:
        """The IP addresses asked (configured, or from resolv.conf), without port or scheme."""
        return [getattr(ns, "address", str(ns)) for ns in self._resolver.nameservers]

    async def txt(self, name: str) -> TxtAnswer:
        try:
            answer = await self._resolver.resolve(name, "TXT", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            return TxtAnswer(Outcome.NXDOMAIN, ttl=_negative_ttl(exc.responses().values()))
        except dns.exception.Timeout as exc:
            return TxtAnswer(Outcome.TIMEOUT, detail=str(exc))
        except dns.resolver.NoNameservers as exc:
            return TxtAnswer(Outcome.SERVFAIL, detail=_first_line(exc))
        except dns.exception.DNSException as exc:
            return TxtAnswer(Outcome.SERVFAIL, detail=_first_line(exc))
        if answer.rrset is None:
            return TxtAnswer(Outcome.NODATA, ttl=_negative_ttl([answer.response]))
        texts = tuple(b"".join(rdata.strings) for rdata in answer.rrset)
        return TxtAnswer(Outcome.RECORDS, texts=texts, ttl=answer.rrset.ttl)

    async def query(self, name: str, rdtype: str) -> Tuple[Outcome, List[Any], str]:
        """Any record type: (outcome, rdata list, detail). For ``mtasts check``."""
        try:
            answer = await self._resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return Outcome.NXDOMAIN, [], ""
        except dns.exception.Timeout as exc:
            return Outcome.TIMEOUT, [], str(exc)
        except dns.exception.DNSException as exc:
            return Outcome.SERVFAIL, [], _first_line(exc)
        if answer.rrset is None:
            return Outcome.NODATA, [], ""
        return Outcome.RECORDS, list(answer.rrset), ""

    async def secure(self, name: str, rdtype: str) -> "SecureAnswer":
        """A lookup whose answer says whether the resolver validated it (AD bit)."""
        try:
            answer = await self._secure.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN as exc:
            responses = list(exc.responses().values())
            return SecureAnswer(Outcome.NXDOMAIN, (), _negative_ttl(responses), _authenticated(responses))
        except dns.exception.Timeout as exc:
            return SecureAnswer(Outcome.TIMEOUT, detail=str(exc))
        except dns.exception.DNSException as exc:
            return SecureAnswer(Outcome.SERVFAIL, detail=_first_line(exc))
        validated = _authenticated([answer.response])
        canonical = answer.canonical_name.to_text(omit_final_dot=True).lower()
        if answer.rrset is None:
            return SecureAnswer(Outcome.NODATA, (), _negative_ttl([answer.response]), validated, name=canonical)
        return SecureAnswer(Outcome.RECORDS, tuple(answer.rrset), answer.rrset.ttl, validated, name=canonical)

    async def addresses(self, host: str, family: int = socket.AF_UNSPEC) -> List[Tuple[int, str]]:
        """A and/or AAAA addresses of *host*; raise OSError when there are none."""
        kinds = []
        if family in (socket.AF_UNSPEC, socket.AF_INET):
            kinds.append((socket.AF_INET, "A"))
        if family in (socket.AF_UNSPEC, socket.AF_INET6):
            kinds.append((socket.AF_INET6, "AAAA"))
        answers = await asyncio.gather(
            *(self._resolver.resolve(host, rdtype, raise_on_no_answer=False) for _fam, rdtype in kinds),
            return_exceptions=True,
        )
        found: List[Tuple[int, str]] = []
        errors = []
        for (fam, rdtype), answer in zip(kinds, answers):
            if isinstance(answer, dns.exception.DNSException):
                errors.append(f"{rdtype}: {_first_line(answer)}")
                continue
            if isinstance(answer, BaseException):
                raise answer
            if answer.rrset is not None:
                found.extend((fam, rdata.address) for rdata in answer.rrset)
        if not found:
            why = "; ".join(errors) if errors else "no A or AAAA record"
            raise OSError(f"cannot resolve {host}: {why}")
        return found


class DnsConnectorResolver(AbstractResolver):
    """aiohttp resolver backed by our DnsClient (so the policy host uses our DNS too).

    ``prefetch`` starts a host's A/AAAA lookup before aiohttp asks for it (discovery asks
    for the policy host's addresses together with the TXT record); ``resolve`` then takes
    that lookup instead of starting another."""

    # Prefetches nobody took (a fetch that never came): the oldest are dropped beyond this.
    MAX_PREFETCHED = 1024

    def __init__(self, client: DnsClient) -> None:
        self._client = client
        self._prefetched: Dict[str, "asyncio.Future[List[Tuple[int, str]]]"] = {}

    def prefetch(self, host: str) -> None:
        if host in self._prefetched:
            return
        task = asyncio.ensure_future(self._client.addresses(host))
        task.add_done_callback(discard_result)  # a lookup nobody takes must not log "never retrieved"
        self._prefetched[host] = task
        while len(self._prefetched) > self.MAX_PREFETCHED:
            self.forget(next(iter(self._prefetched)))

    def forget(self, host: str) -> None:
        task = self._prefetched.pop(host, None)
        if task is not None and not task.done():
            task.cancel()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> List[Dict[str, Any]]:
        early = self._prefetched.pop(host, None)
        if early is not None:
            addresses = [(fam, a) for fam, a in await early if family in (socket.AF_UNSPEC, fam)]
            if not addresses:
                raise OSError(f"cannot resolve {host}: no address of family {family}")
        else:
            addresses = await self._client.addresses(host, family)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for fam, address in addresses
        ]

    async def close(self) -> None:
        for host in list(self._prefetched):
            self.forget(host)


def discard_result(task: "asyncio.Future[Any]") -> None:
    """A done callback for a lookup started early that may go unused: its exception is
    taken, so asyncio does not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _negative_ttl(responses) -> int:
    """RFC 2308 §5: the negative TTL is min(SOA TTL, SOA MINIMUM)."""
    for response in responses:
        if not isinstance(response, dns.message.Message):
            continue
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return min(rrset.ttl, rrset[0].minimum)
    return DEFAULT_NEGATIVE_TTL


def _authenticated(responses) -> bool:
    return bool(responses) and all(r.flags & dns.flags.AD for r in responses)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
