"""The resolver in-process: real PolicyResolver and caches, fake DNS/HTTPS/fleet, fake clock.

No root, no sockets, no subprocess: these tests run as any user in milliseconds. What
they cannot see (real dnspython, aiohttp, TLS, Redis, Postfix) the integration and e2e
tests cover.
"""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Optional

from mtasts.config import CacheSection, Config, DaneSection
from mtasts.resolver import PolicyResolver
from mtasts.store.fleet import FleetCache
from mtasts.store.tiered import PolicyCache
from tests.support.fakes import Clock, FakeDns, FakePolicies, FakeShared
from tests.support.policies import policy_text


def policy_body(domain: str, mode: str = "enforce", mx=("mx.{d}",), max_age: int = 86400) -> bytes:
    """The resolver tests' usual policy: one MX host, a one-day max_age."""
    return policy_text(mode=mode, mx=mx, max_age=max_age, domain=domain)


class Host:
    """One resolver with its own cache (one "host" of a fleet when *shared* is given)."""

    def __init__(
        self,
        clock: Clock,
        dns: FakeDns,
        policies: FakePolicies,
        shared: Optional[FakeShared] = None,
        cache: Optional[dict] = None,
        dane: Optional[dict] = None,
        maps: Optional[dict] = None,
    ) -> None:
        """*cache*, *dane*: keys of those sections; *maps*: map profiles. No DANE answers
        unless a test asks (``dane={"mode": "prefer"}``): most rules are about MTA-STS alone."""
        self.clock, self.dns, self.policies = clock, dns, policies
        self.config = Config(
            cache=CacheSection(**{"backend": "memory", **(cache or {})}),
            dane=DaneSection(**{"mode": "off", **(dane or {})}),
            **({"maps": maps} if maps is not None else {}),
        )
        if shared is not None:
            self.cache: PolicyCache = FleetCache(1000, None, shared, clock=clock, wait=0.2)
        else:
            self.cache = PolicyCache(1000)
        self.resolver = PolicyResolver(self.config, self.cache, dns, policies, clock=clock, jitter=lambda: 0.0)

    async def answer(self, key: str, map_name: str = "postfix") -> bytes:
        """What Postfix gets, the way the socketmap server asks for it."""
        reply = self.resolver.answer_nowait(map_name, key)
        if reply is None:
            reply = await self.resolver.answer(map_name, key)
        return reply

    async def settle(self) -> None:
        """Wait for background work (re-checks, refreshes, DANE checks, sharing)."""
        await self.resolver.settle()


@contextlib.asynccontextmanager
async def running(host: Host) -> AsyncIterator[Host]:
    await host.resolver.start()
    try:
        yield host
    finally:
        await host.resolver.close()
