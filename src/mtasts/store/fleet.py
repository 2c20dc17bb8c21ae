"""The fleet tier: this host's ``PolicyCache`` in front of a cache shared by the fleet.

The resolver sees one cache with the same calls as alone (get/peek/put/purge, and
recall/forget for what may live elsewhere); this tier adds what a fleet means:

* ``put`` shares what this host learned, without waiting for the shared cache;
* ``recall`` finds what another host learned, or waits briefly while another host is
  discovering the same domain (one discovery per domain for the whole fleet);
* another host's updates reach the entries this host holds through
  ``freshness.merged``, the rule in the pure core: a newer valid policy replaces an
  older one, a failure never replaces a valid policy (RFC 8461 §3.3);
* a purge on one host purges everywhere.

The shared cache is a ``SharedTier``: Redis/Valkey (``store.shared.SharedCache``) in the
daemon, an in-memory fake in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable, List, Optional, Protocol, Set

from mtasts.core import freshness
from mtasts.core.freshness import CacheEntry
from mtasts.core.override import Override
from mtasts.store.sqlite import SqliteStore
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.store")

# How long a host waits for another host's discovery of the same domain.
FLEET_WAIT = 3.0


class SharedTier(Protocol):
    """The shared cache's calls; each is bounded and answers "nothing" when it fails."""

    def start(self, on_event: Callable[[str, str], Awaitable[None]]) -> None: ...

    async def get(self, domain: str) -> Optional[CacheEntry]: ...

    async def put(self, entry: CacheEntry, now: float) -> None: ...

    async def delete(self, domain: str) -> None: ...

    async def delete_all(self) -> None: ...

    async def lock(self, domain: str) -> bool: ...

    async def wait_for(self, domain: str, timeout: float) -> Optional[CacheEntry]: ...

    async def put_override(self, override: Override, now: float) -> None: ...

    async def delete_override(self, domain: str) -> None: ...

    async def get_override(self, domain: str) -> Optional[Override]: ...

    async def overrides(self) -> List[Override]: ...

    async def close(self) -> None: ...


class FleetCache(PolicyCache):
    def __init__(
        self,
        memory_entries: int,
        store: Optional[SqliteStore],
        shared: SharedTier,
        clock: Callable[[], float] = time.time,
        wait: float = FLEET_WAIT,
    ) -> None:
        super().__init__(memory_entries, store)
        self.shared = shared
        self._clock = clock
        self._wait = wait
        self._sharing: Set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self.shared.start(self._event)

    async def stop(self) -> None:
        for task in list(self._sharing):
            task.cancel()
        await asyncio.gather(*self._sharing, return_exceptions=True)

    def in_background(self) -> List[asyncio.Task[None]]:
        return list(self._sharing)

    def put(self, entry: CacheEntry, share: bool = True) -> None:
        super().put(entry)
        if share:
            self._in_background(self.shared.put(entry, self._clock()))

    async def _shared_entry(self, domain: str) -> Optional[CacheEntry]:
        return self._plausible(domain, await self.shared.get(domain))

    def _plausible(self, domain: str, entry: Optional[CacheEntry]) -> Optional[CacheEntry]:
        """*entry* unless its times say no host of the fleet wrote it (issue 24, 9)."""
        if entry is None:
            return None
        why = freshness.implausible(entry, domain, self._clock())
        if why:
            log.warning("%s: ignoring the shared cache's entry: %s", domain, why)
            return None
        return entry

    async def recall(self, domain: str, usable: Callable[[CacheEntry], bool]) -> Optional[CacheEntry]:
        found = await self._shared_entry(domain)
        if (found is None or not usable(found)) and not await self.shared.lock(domain):
            # Another host is discovering it: wait briefly for its result, else do it ourselves.
            found = self._plausible(domain, await self.shared.wait_for(domain, self._wait))
        if found is None or not usable(found):
            return None
        super().put(found)
        return found

    def put_override(self, override: Override) -> None:
        super().put_override(override)
        self._in_background(self.shared.put_override(override, self._clock()))

    def delete_override(self, domain: str) -> bool:
        found = super().delete_override(domain)
        self._in_background(self.shared.delete_override(domain))
        return found

    async def fleet_overrides(self) -> List[Override]:
        return await self.shared.overrides()

    def _in_background(self, operation: Awaitable[None]) -> None:
        task = asyncio.ensure_future(operation)
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    async def forget(self, domain: str) -> bool:
        purged = self.purge(domain)
        await self.shared.delete(domain)
        return purged

    async def forget_all(self) -> int:
        count = self.purge_all()
        await self.shared.delete_all()
        return count

    async def _event(self, kind: str, domain: str) -> None:
        """Another host learned, refreshed or purged *domain* (``*``: everything)."""
        if kind == "purge":
            if domain == "*":
                self.purge_all()
            else:
                self.purge(domain)
        elif kind == "override":
            # Another host added, changed or removed DOMAIN's override: what the shared cache
            # holds now is this host's too (nothing there: removed or expired).
            override = await self.shared.get_override(domain)
            if override is not None:
                super().put_override(override)
            else:
                super().delete_override(domain)
            if self.on_override is not None:
                self.on_override(domain, override)
        elif kind == "update":
            # Only what this host already holds is updated; the rest it finds in the shared
            # cache when (if ever) it sends there, instead of storing every domain of the fleet.
            local = self.peek(domain)
            if local is None:
                return
            keep = freshness.merged(local, await self._shared_entry(domain), self._clock())
            if keep is not None:
                super().put(keep)
