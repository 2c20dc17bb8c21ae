"""Small in-memory stand-ins for the resolver's edges, in the manner of httpx's MockTransport:
the resolver runs unchanged, in-process, on a fake clock, without root or sockets.

* ``FakeDns`` implements ``net.dns.DnsLookups``: TXT answers, and DNSSEC answers (with the
  AD bit) for the DANE checks, built with dnspython's own rdata parser.
* ``FakePolicies`` implements ``net.fetch.PolicySource``: a policy body or a FetchError per
  domain, parsed by the real policy parser.
* ``SharedHub``/``FakeShared`` implement ``store.fleet.SharedTier`` for several hosts: one
  dict as the shared cache, events delivered to every other host.
* ``Clock``: the time the resolver sees; tests move it.

Each records what was asked, so tests count queries and fetches. A ``gate`` (an
asyncio.Event) holds answers back to make lookups overlap.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

import dns.rdata
import dns.rdataclass
import dns.rdatatype

from mtasts.core.entrycodec import decode_entry, encode_entry
from mtasts.core.freshness import CacheEntry
from mtasts.core.policy import parse_policy
from mtasts.errors import FetchError, FetchFailure
from mtasts.net.dns import Outcome, SecureAnswer, TxtAnswer
from mtasts.net.fetch import FetchResult, policy_url

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def rdata(rdtype: str, text: str) -> Any:
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(rdtype), text)


class FakeDns:
    nameservers = ["127.0.0.1:53"]
    nameserver_addresses = ["127.0.0.1"]

    def __init__(self) -> None:
        self.txt_answers: Dict[str, TxtAnswer] = {}
        self.secure_answers: Dict[Tuple[str, str], SecureAnswer] = {}
        self.asked: List[Tuple[str, str]] = []
        self.gate: Optional[asyncio.Event] = None
        self.fault: Optional[BaseException] = None  # raised by every query (a local fault)

    # -- the world ------------------------------------------------------------------------

    def publish(self, domain: str, policy_id: str, ttl: int = 300) -> None:
        self.txt_answers["_mta-sts." + domain] = TxtAnswer(Outcome.RECORDS, (f"v=STSv1; id={policy_id}".encode(),), ttl)

    def txt_texts(self, name: str, *texts: bytes, ttl: int = 300) -> None:
        self.txt_answers[name] = TxtAnswer(Outcome.RECORDS, texts, ttl)

    def fail(self, name: str, outcome: Outcome = Outcome.SERVFAIL) -> None:
        self.txt_answers[name] = TxtAnswer(outcome, detail="test says so")

    def remove(self, name: str) -> None:
        self.txt_answers.pop(name, None)

    def signed(self, name: str, rdtype: str, *texts: str, validated: bool = True, ttl: int = 300) -> None:
        """DNSSEC answers for DANE: *texts* in zone-file form; none means NODATA."""
        records = tuple(rdata(rdtype, t) for t in texts)
        outcome = Outcome.RECORDS if records else Outcome.NODATA
        self.secure_answers[(name, rdtype)] = SecureAnswer(outcome, records, ttl, validated, name=name)

    def secure_fail(self, name: str, rdtype: str, outcome: Outcome = Outcome.SERVFAIL) -> None:
        self.secure_answers[(name, rdtype)] = SecureAnswer(outcome, detail="test says so")

    def count(self, name: str, rdtype: str = "TXT") -> int:
        return self.asked.count((name, rdtype))

    # -- DnsLookups -----------------------------------------------------------------------

    def set_timeout(self, timeout: float) -> None:
        pass

    async def _wait(self, name: str, rdtype: str) -> None:
        self.asked.append((name, rdtype))
        if self.gate is not None:
            await self.gate.wait()
        if self.fault is not None:
            raise self.fault

    async def txt(self, name: str) -> TxtAnswer:
        await self._wait(name, "TXT")
        return self.txt_answers.get(name, TxtAnswer(Outcome.NXDOMAIN, ttl=900))

    async def secure(self, name: str, rdtype: str) -> SecureAnswer:
        await self._wait(name, rdtype)
        return self.secure_answers.get((name, rdtype), SecureAnswer(Outcome.NXDOMAIN, validated=False, name=name))

    async def query(self, name: str, rdtype: str) -> Tuple[Outcome, List[Any], str]:
        answer = await self.secure(name, rdtype)
        return answer.outcome, list(answer.records), answer.detail


class FakePolicies:
    def __init__(self) -> None:
        self.served: Dict[str, Union[bytes, FetchError]] = {}
        self.fetched: List[str] = []
        self.prepared: List[str] = []
        self.abandoned: List[str] = []
        self.gate: Optional[asyncio.Event] = None
        self.fault: Optional[BaseException] = None  # raised by every fetch (a local fault)

    def prepare(self, domain: str) -> None:
        self.prepared.append(domain)

    def abandon(self, domain: str) -> None:
        self.abandoned.append(domain)

    def serve(self, domain: str, body: Union[bytes, FetchError]) -> None:
        self.served[domain] = body

    def count(self, domain: str) -> int:
        return self.fetched.count(domain)

    async def fetch(self, domain: str) -> FetchResult:
        self.fetched.append(domain)
        if self.gate is not None:
            await self.gate.wait()
        if self.fault is not None:
            raise self.fault
        body = self.served.get(domain)
        if body is None:
            raise FetchError(FetchFailure.CONNECT, f"{policy_url(domain)}: connection refused")
        if isinstance(body, FetchError):
            raise body
        return FetchResult(parse_policy(body), body, policy_url(domain))


class SharedHub:
    """The shared cache of one fleet; ``host()`` gives each host its client."""

    def __init__(self) -> None:
        self.entries: Dict[str, bytes] = {}  # encoded, as Redis holds them
        self.locks: Dict[str, str] = {}
        self.overrides: Dict[str, Any] = {}
        self.hosts: List[FakeShared] = []
        self.puts = 0

    def host(self, name: str) -> FakeShared:
        client = FakeShared(self, name)
        self.hosts.append(client)
        return client

    async def broadcast(self, sender: FakeShared, kind: str, domain: str) -> None:
        for host in self.hosts:
            if host is not sender and host.on_event is not None:
                await host.on_event(kind, domain)


class FakeShared:
    def __init__(self, hub: SharedHub, name: str) -> None:
        self.hub, self.name = hub, name
        self.on_event: Optional[Callable[[str, str], Awaitable[None]]] = None

    def start(self, on_event: Callable[[str, str], Awaitable[None]]) -> None:
        self.on_event = on_event

    async def get(self, domain: str) -> Optional[CacheEntry]:
        raw = self.hub.entries.get(domain)
        return decode_entry(raw, domain) if raw is not None else None

    async def put(self, entry: CacheEntry, now: float) -> None:
        self.hub.puts += 1
        self.hub.entries[entry.domain] = encode_entry(entry)
        await self.hub.broadcast(self, "update", entry.domain)

    async def delete(self, domain: str) -> None:
        self.hub.entries.pop(domain, None)
        await self.hub.broadcast(self, "purge", domain)

    async def delete_all(self) -> None:
        self.hub.entries.clear()
        await self.hub.broadcast(self, "purge", "*")

    async def lock(self, domain: str) -> bool:
        return self.hub.locks.setdefault(domain, self.name) == self.name

    async def wait_for(self, domain: str, timeout: float) -> Optional[CacheEntry]:
        for _ in range(int(timeout / 0.01)):
            entry = await self.get(domain)
            if entry is not None:
                return entry
            await asyncio.sleep(0.01)
        return None

    async def put_override(self, override, now: float) -> None:
        self.hub.overrides[override.domain] = override
        await self.hub.broadcast(self, "override", override.domain)

    async def delete_override(self, domain: str) -> None:
        self.hub.overrides.pop(domain, None)
        await self.hub.broadcast(self, "override", domain)

    async def get_override(self, domain: str):
        return self.hub.overrides.get(domain)

    async def overrides(self):
        return list(self.hub.overrides.values())

    async def close(self) -> None:
        pass
