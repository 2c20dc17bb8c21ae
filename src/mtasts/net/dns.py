"""DNS for discovery, the policy host's addresses and DANE: a stub resolver's exchange.

One ``DnsClient`` serves discovery, the policy fetch (the policy host's addresses) and
DANE, so one DNS configuration governs everything. The queries a lookup sends (TXT, A/AAAA,
the DNSSEC-flagged MX/A/AAAA/TLSA of DANE) go out through ``_ask``: messages built and read
by ``core/dnswire``, one fresh UDP socket per query, TCP after a truncated answer.
dnspython reads the system's resolv.conf, makes the rdata objects DANE reads, and answers
``mtasts check``'s queries of any type. Nothing is cached here: the policy cache decides
what to remember.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import socket
import struct
from dataclasses import dataclass
from typing import Any, List, Protocol, Sequence, Tuple

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver

from mtasts.core import dnswire
from mtasts.errors import ConfigError, DnsWireError, ResourceExhausted

# Answer for negative lookups when the response carries no SOA (RFC 2308 §5).
DEFAULT_NEGATIVE_TTL = 900
# RFC 8305 §3's "Resolution Delay": how long one address family waits for the other.
RESOLUTION_DELAY = 0.05
# Datagrams read from one query's socket per turn of the event loop: a flood from the
# nameserver's address (or forged as it) waits for the next turn instead of holding this one.
DATAGRAMS_PER_TURN = 8


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

    async def secure(self, name: str, rdtype: str) -> SecureAnswer: ...


class DnsClient:
    def __init__(self, nameservers: Sequence[Tuple[str, int]], timeout: float) -> None:
        """*nameservers*: (IP address, port) each; none: the system's (resolv.conf)."""
        try:
            resolver = dns.asyncresolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigError(
                f"[resolver] nameservers: empty, and the system resolver configuration is unusable ({exc})"
            ) from None
        if nameservers:
            resolver.nameservers = [dns.nameserver.Do53Nameserver(address, port) for address, port in nameservers]
        resolver.cache = None
        self._resolver = resolver
        # Discovery, the policy host's addresses and DANE ask through our own exchange
        # (core/dnswire.py): dnspython's Resolver cost four times the CPU per query, most of a
        # first lookup's (BENCHMARKS.md). It still reads resolv.conf and serves `check`.
        self._servers = [_Server.of(ns, resolver.port) for ns in resolver.nameservers]
        self.set_timeout(timeout)

    def set_timeout(self, timeout: float) -> None:
        self._resolver.lifetime = timeout
        self._resolver.timeout = min(timeout, 2.0)
        self._lifetime = timeout
        # Per server and try: every server gets its turn within the lifetime (a dead first
        # server must not use it all up), and no try waits over 2 s (RFC 1536 §1's advice
        # against long retransmission timers; glibc and dnspython wait 2 s too).
        self._try_timeout = min(timeout / max(1, len(self._servers)), 2.0)

    @property
    def nameservers(self) -> List[str]:
        return [str(ns) for ns in self._resolver.nameservers]

    @property
    def nameserver_addresses(self) -> List[str]:
        """The IP addresses asked (configured, or from resolv.conf), without port or scheme."""
        return [getattr(ns, "address", str(ns)) for ns in self._resolver.nameservers]

    async def txt(self, name: str) -> TxtAnswer:
        try:
            response, chain = await self._ask(name, dnswire.TXT)
            if response.rcode == dnswire.NXDOMAIN:
                return TxtAnswer(Outcome.NXDOMAIN, ttl=_denial_ttl(response, chain))
            if not chain.records:
                return TxtAnswer(Outcome.NODATA, ttl=_denial_ttl(response, chain))
            texts = tuple(dnswire.txt_data(response, r) for r in chain.records)
        except _Unanswered as exc:
            return TxtAnswer(exc.outcome, detail=exc.detail)
        except DnsWireError as exc:
            return TxtAnswer(Outcome.SERVFAIL, detail=str(exc))
        return TxtAnswer(Outcome.RECORDS, texts=texts, ttl=chain.ttl)

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

    async def secure(self, name: str, rdtype: str) -> SecureAnswer:
        """A lookup whose answer says whether the resolver validated it (AD bit)."""
        try:
            response, chain = await self._ask(name, dnswire.TYPES[rdtype], dnssec=True)
            validated = response.authenticated
            canonical = dnswire.name_text(chain.canonical)
            if response.rcode == dnswire.NXDOMAIN:
                return SecureAnswer(Outcome.NXDOMAIN, (), _denial_ttl(response, chain), validated, name=canonical)
            if not chain.records:
                return SecureAnswer(Outcome.NODATA, (), _denial_ttl(response, chain), validated, name=canonical)
            # The callers read dnspython's rdata classes (MX exchange, TLSA fields): made from
            # the same wire, for the few records a DANE check reads.
            records = tuple(
                dns.rdata.from_wire(
                    dns.rdataclass.RdataClass(r.rdclass),
                    dns.rdatatype.RdataType(r.rdtype),
                    response.wire,
                    r.offset,
                    r.length,
                )
                for r in chain.records
            )
        except _Unanswered as exc:
            return SecureAnswer(exc.outcome, detail=exc.detail)
        except (DnsWireError, dns.exception.DNSException) as exc:
            return SecureAnswer(Outcome.SERVFAIL, detail=_first_line(exc))
        return SecureAnswer(Outcome.RECORDS, records, chain.ttl, validated, name=canonical)

    async def addresses(self, host: str, family: int = socket.AF_UNSPEC) -> List[Tuple[int, str]]:
        """A and/or AAAA addresses of *host* (A first); raise OSError when there are none.

        Once one family has addresses the other gets RESOLUTION_DELAY more, no longer (RFC
        8305 §3): a resolver that drops AAAA queries costs the fetch 50 ms, not the timeout."""
        kinds = []
        if family in (socket.AF_UNSPEC, socket.AF_INET):
            kinds.append((socket.AF_INET, dnswire.A, "A"))
        if family in (socket.AF_UNSPEC, socket.AF_INET6):
            kinds.append((socket.AF_INET6, dnswire.AAAA, "AAAA"))
        asks = [asyncio.ensure_future(self._ask(host, rdtype)) for _fam, rdtype, _t in kinds]
        try:
            pending = set(asks)
            while pending:
                answered = any(
                    a.done() and not a.cancelled() and a.exception() is None and a.result()[1].records for a in asks
                )
                done, pending = await asyncio.wait(
                    pending, timeout=RESOLUTION_DELAY if answered else None, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break  # the other family is late: go with the addresses in hand
        finally:
            for ask in asks:
                if not ask.done():
                    ask.cancel()
                    ask.add_done_callback(discard_result)
        found: List[Tuple[int, str]] = []
        errors = []
        for (fam, _rdtype, label), ask in zip(kinds, asks):
            if not ask.done() or ask.cancelled():
                continue  # the late family, cancelled above
            answer = ask.exception() or ask.result()
            if isinstance(answer, _Unanswered):
                errors.append(f"{label}: {answer.detail or answer.outcome.value}")
                continue
            if isinstance(answer, DnsWireError):
                errors.append(f"{label}: {answer}")
                continue
            if isinstance(answer, BaseException):
                raise answer
            response, chain = answer
            try:
                found.extend((fam, dnswire.address(response, r)) for r in chain.records)
            except DnsWireError as exc:
                errors.append(f"{label}: {exc}")
        if not found:
            why = "; ".join(errors) if errors else "no A or AAAA record"
            raise OSError(f"cannot resolve {host}: {why}")
        return found

    async def _ask(self, name: str, rdtype: int, dnssec: bool = False) -> Tuple[dnswire.Response, dnswire.Chain]:
        """One question to the nameservers in order, as a stub resolver asks (RFC 1035 §7.2):
        a server that times out is tried again while the lifetime lasts, one that fails
        (SERVFAIL, REFUSED, unreachable, unreadable answers) is not asked again for this
        question. Raises ``_Unanswered`` when no server gives NOERROR or NXDOMAIN."""
        qname = dnswire.encode_name(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._lifetime
        servers = list(self._servers)
        failures: List[str] = []
        while servers:
            for server in list(servers):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise _Unanswered(
                        Outcome.TIMEOUT,
                        f"no answer for {name} {_type_text(rdtype)} within"
                        f" {self._lifetime:g} s ({'; '.join(failures) or 'no server answered'})",
                    )
                qid = _query_id()
                query = dnswire.build_query(qid, qname, rdtype, dnssec)
                try:
                    response = await _udp_exchange(
                        loop, server, query, qid, qname, rdtype, min(self._try_timeout, remaining)
                    )
                    if response.truncated:
                        # RFC 7766 §5: the whole answer over TCP from the same server, within one
                        # try's time like the UDP try, so a server that stalls there leaves the
                        # lifetime to the next server (dnspython does the same).
                        response = await _tcp_exchange(
                            server, query, qid, qname, rdtype, max(0.0, min(self._try_timeout, deadline - loop.time()))
                        )
                except _NoReply:
                    failures.append(f"{server.label} timed out")
                    continue
                except (OSError, DnsWireError) as exc:
                    servers.remove(server)
                    failures.append(f"{server.label}: {_first_line(exc)}")
                    continue
                if response.rcode in (dnswire.NOERROR, dnswire.NXDOMAIN):
                    return response, dnswire.follow(response, qname, rdtype)
                servers.remove(server)
                failures.append(f"{server.label} answered {dnswire.RCODE_NAMES.get(response.rcode, response.rcode)}")
        raise _Unanswered(
            Outcome.SERVFAIL, f"no nameserver answered {name} {_type_text(rdtype)}: {'; '.join(failures)}"
        )


class _Unanswered(Exception):
    """No nameserver gave an answer (NOERROR or NXDOMAIN) to one question."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


class _NoReply(Exception):
    """One server sent no matching reply within its try's time."""


@dataclass(frozen=True)
class _Server:
    label: str  # as dnspython names it in messages: Do53:ADDRESS@PORT
    family: int
    sockaddr: Tuple[Any, ...]

    @classmethod
    def of(cls, nameserver: Any, default_port: int) -> _Server:
        address = getattr(nameserver, "address", nameserver)
        port = getattr(nameserver, "port", default_port)
        # Numeric only (resolv.conf and [resolver] hold addresses); keeps an IPv6 scope id.
        try:
            family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
                address, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
            )[0]
        except (socket.gaierror, TypeError, ValueError) as exc:
            raise ConfigError(
                f"[resolver] nameservers (or /etc/resolv.conf): {address!r} is not an IP address"
                f" this resolver can send DNS queries to ({exc})"
            ) from None
        return cls(f"Do53:{address}@{port}", family, sockaddr)


def _query_id() -> int:
    # RFC 5452 §9.2: an unpredictable ID, besides the kernel's random source port.
    return secrets.randbits(16)


async def _udp_exchange(
    loop: asyncio.AbstractEventLoop, server: _Server, query: bytes, qid: int, qname: bytes, rdtype: int, timeout: float
) -> dnswire.Response:
    """Send *query* from a fresh socket (a new random source port per query, RFC 5452 §9.2)
    connected to *server*, so the kernel drops datagrams from anywhere else; wait for the
    reply that answers it. Unreadable or unrelated datagrams are ignored, as forgeries
    would be; an ICMP error (port unreachable) raises OSError."""
    try:
        sock = socket.socket(server.family, socket.SOCK_DGRAM)
    except OSError as exc:
        ResourceExhausted.check(exc, f"a socket for a DNS query to {server.label}")
        raise
    try:
        try:
            sock.setblocking(False)
            sock.connect(server.sockaddr)
            sock.send(query)
        except OSError as exc:
            ResourceExhausted.check(exc, f"a DNS query to {server.label}")
            raise
        reply: asyncio.Future[dnswire.Response] = loop.create_future()

        def readable() -> None:
            for _ in range(DATAGRAMS_PER_TURN):  # the reader is called again next turn
                if reply.done():
                    return
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    reply.set_exception(exc)
                    return
                if not dnswire.may_answer(data, qid, qname, rdtype):
                    continue  # not ours: dropped unparsed
                try:
                    response = dnswire.parse_response(data)
                except DnsWireError:
                    continue
                if dnswire.answers_question(response, qid, qname, rdtype):
                    reply.set_result(response)

        def expired() -> None:
            if not reply.done():
                reply.set_exception(_NoReply())

        fileno = sock.fileno()
        loop.add_reader(fileno, readable)
        timer = loop.call_later(timeout, expired)
        try:
            return await reply
        finally:
            timer.cancel()
            loop.remove_reader(fileno)
    finally:
        sock.close()


async def _tcp_exchange(
    server: _Server, query: bytes, qid: int, qname: bytes, rdtype: int, timeout: float
) -> dnswire.Response:
    """The same query over TCP (RFC 1035 §4.2.2: a two-octet length before each message)."""

    async def exchange() -> dnswire.Response:
        try:
            reader, writer = await asyncio.open_connection(server.sockaddr[0], server.sockaddr[1])
        except OSError as exc:
            ResourceExhausted.check(exc, f"a TCP connection for a DNS query to {server.label}")
            raise
        try:
            writer.write(struct.pack("!H", len(query)) + query)
            (length,) = struct.unpack("!H", await reader.readexactly(2))
            response = dnswire.parse_response(await reader.readexactly(length))
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("TCP answer cut off") from None
        finally:
            writer.close()
        if not dnswire.answers_question(response, qid, qname, rdtype):
            raise DnsWireError("TCP answer to another question")
        return response

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        raise _NoReply() from None


def _type_text(rdtype: int) -> str:
    return next((text for text, number in dnswire.TYPES.items() if number == rdtype), str(rdtype))


def _denial_ttl(response: dnswire.Response, chain: dnswire.Chain) -> int:
    """RFC 2308 §5 through the CNAMEs that led to the denial; without an SOA, the default."""
    ttl = dnswire.negative_ttl(response)
    if ttl is None:
        ttl = DEFAULT_NEGATIVE_TTL
    asked = response.question[0] if response.question is not None else None
    return min(ttl, chain.ttl) if chain.canonical != asked else ttl


def discard_result(task: asyncio.Future[Any]) -> None:
    """A done callback for a lookup started early that may go unused: its exception is
    taken, so asyncio does not log "exception was never retrieved"."""
    if not task.cancelled():
        task.exception()


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
