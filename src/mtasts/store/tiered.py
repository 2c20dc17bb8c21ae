"""PolicyCache: a bounded in-memory tier (cachetools LRU) over an optional store.

Writes go through to both tiers; a memory miss reads the store and promotes the entry.
Without a store ("memory" backend) the memory tier is all there is.

Answers never depend on the store working: a row that cannot be read (a damaged page, a
value no longer decodable) is a miss, logged, counted and removed if it can be; a write
that fails (a full disk, a read-only file) is logged and counted while the memory tier
carries on, as it does when Redis is unreachable. One ERROR when the store starts failing,
one WARNING when it works again.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterator, List, Optional

from cachetools import LRUCache

from mtasts.core.freshness import CacheEntry
from mtasts.core.history import MAX_CHANGES, Change
from mtasts.core.override import Override
from mtasts.errors import StoreError
from mtasts.store.sqlite import SqliteStore

log = logging.getLogger("mtasts.store")

# What _in_store answers when the store is absent or failed.
FAILED: Any = object()


class PolicyCache:
    def __init__(self, memory_entries: int, store: Optional[SqliteStore] = None) -> None:
        self._memory: LRUCache = LRUCache(maxsize=memory_entries)
        self.store = store
        self.memory_hits = 0
        self.store_hits = 0
        self.misses = 0
        self.store_errors = 0
        self._failing = False
        self._overrides: Dict[str, Override] = {}  # the memory backend's (and a failing store's)
        self._history: Dict[str, List[Change]] = {}  # the same
        # Called with (domain, override or None) when another host changed an override.
        self.on_override: Optional[Callable[[str, Optional[Override]], None]] = None

    def _failed(self, what: str, exc: StoreError) -> None:
        self.store_errors += 1
        if not self._failing:
            self._failing = True
            log.error(
                "cache store %s failed (%s): answering from memory; fix the store (disk space,"
                " permissions of %s, or remove a damaged file while mtasts is stopped)",
                what,
                exc,
                self.store.path if self.store is not None else "?",
            )

    def _worked(self) -> None:
        if self._failing:
            self._failing = False
            log.warning("cache store works again")

    def _read(self, domain: str) -> Optional[CacheEntry]:
        """The store's entry for *domain*; a row that cannot be read is a miss (and removed)."""
        assert self.store is not None
        try:
            entry = self.store.get(domain)
        except StoreError as exc:
            self._failed(f"read of {domain}", exc)
            try:
                self.store.delete(domain)  # a damaged row would fail the same way every time
            except StoreError:
                pass
            return None
        return entry

    def get(self, domain: str) -> Optional[CacheEntry]:
        entry = self._memory.get(domain)
        if entry is not None:
            self.memory_hits += 1
            return entry
        if self.store is not None:
            entry = self._read(domain)
            if entry is not None:
                self.store_hits += 1
                self._memory[entry.domain] = entry  # the entry's own string: one copy, not two
                return entry
        self.misses += 1
        return None

    def peek(self, domain: str) -> Optional[CacheEntry]:
        """Like get, without counting a hit or promoting the entry into memory."""
        entry = self._memory.get(domain)
        if entry is None and self.store is not None:
            entry = self._read(domain)
        return entry

    def put(self, entry: CacheEntry, share: bool = True) -> None:
        """Keep *entry*; *share* is for the fleet tier (``store.fleet``): False for this
        host's own bookkeeping (a TXT re-check, a failed refresh's back-off)."""
        self._memory[entry.domain] = entry
        if self.store is not None:
            try:
                self.store.put(entry)
            except StoreError as exc:
                self._failed(f"write of {entry.domain}", exc)
            else:
                self._worked()

    def in_background(self) -> List[Any]:
        """What this tier still does in the background (the fleet tier shares entries)."""
        return []

    def purge(self, domain: str) -> bool:
        in_memory = self._memory.pop(domain, None) is not None
        in_store = False
        if self.store is not None:
            try:
                in_store = self.store.delete(domain)
            except StoreError as exc:
                self._failed(f"delete of {domain}", exc)
        return in_memory or in_store

    # -- exemptions (mtasts override) and policy history: with the store, else in memory ---

    def _in_store(self, what: str, method: str, *args: Any) -> Any:
        """The store's *method*(*args*); FAILED when there is no store or it failed (logged,
        counted): the memory copy answers then."""
        if self.store is None:
            return FAILED
        try:
            return getattr(self.store, method)(*args)
        except StoreError as exc:
            self._failed(what, exc)
            return FAILED

    def overrides(self) -> List[Override]:
        stored = self._in_store("read of the overrides", "overrides")
        return list(self._overrides.values()) if stored is FAILED else stored

    def put_override(self, override: Override) -> None:
        self._overrides[override.domain] = override
        self._in_store(f"write of the override of {override.domain}", "put_override", override)

    def delete_override(self, domain: str) -> bool:
        found = self._overrides.pop(domain, None) is not None
        return self._in_store(f"delete of the override of {domain}", "delete_override", domain) is True or found

    def add_changes(self, changes: List[Change]) -> None:
        if not changes:
            return
        domain = changes[0].domain
        kept = self._history.setdefault(domain, [])
        kept.extend(changes)
        del kept[:-MAX_CHANGES]
        if self._in_store(f"write of {domain}'s history", "add_changes", changes, MAX_CHANGES) is not FAILED:
            del self._history[domain]  # the store has it
        elif len(self._history) > self._memory.maxsize:
            self._history.pop(next(iter(self._history)))  # bounded like the memory tier

    def history(self, domain: str) -> List[Change]:
        stored = self._in_store(f"read of {domain}'s history", "history", domain)
        return list(self._history.get(domain, ())) if stored is FAILED else stored

    # -- what a wider tier may add (store.fleet); alone, this host is all there is -----

    async def fleet_overrides(self) -> List[Override]:
        """Overrides the rest of the fleet has set (none without a fleet)."""
        return []

    def start(self) -> None:
        pass

    async def recall(self, domain: str, usable: Callable[[CacheEntry], bool]) -> Optional[CacheEntry]:
        """An entry for *domain* learned elsewhere that *usable* accepts, kept here too."""
        return None

    async def forget(self, domain: str) -> bool:
        """Purge *domain* from every tier (``cache purge``)."""
        return self.purge(domain)

    async def forget_all(self) -> int:
        return self.purge_all()

    async def stop(self) -> None:
        pass

    def purge_all(self) -> int:
        count = len(self._memory)
        self._memory.clear()
        if self.store is not None:
            try:
                count = self.store.delete_all()
            except StoreError as exc:
                self._failed("delete of every entry", exc)
        return count

    def entries(self) -> Iterator[CacheEntry]:
        if self.store is not None:
            return self._store_entries()
        return iter(sorted(self._memory.values(), key=lambda e: e.domain))

    def _store_entries(self) -> Iterator[CacheEntry]:
        assert self.store is not None
        try:
            yield from self.store.entries()
        except StoreError as exc:
            self._failed("scan", exc)  # what was read so far is listed

    def due(self, now: float, limit: int) -> List[str]:
        if self.store is not None:
            try:
                return self.store.due(now, limit)
            except StoreError as exc:
                self._failed("refresh scan", exc)
                return []
        due = [e.domain for e in self._memory.values() if e.valid_policy(now) is not None and e.refresh_at <= now]
        return sorted(due)[:limit]

    def prune(self, before: float) -> int:
        if self.store is None:
            return 0
        try:
            return self.store.prune(before)
        except StoreError as exc:
            self._failed("prune", exc)
            return 0

    @property
    def memory_size(self) -> int:
        return len(self._memory)

    def count(self):
        if self.store is not None:
            try:
                return self.store.count()
            except StoreError as exc:
                self._failed("count", exc)  # then count what memory holds
        entries = list(self._memory.values())
        return len(entries), sum(1 for e in entries if e.cached is not None)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
