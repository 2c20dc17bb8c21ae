"""PolicyCache: a bounded in-memory tier (cachetools LRU) over an optional store.

Writes go through to both tiers; a memory miss reads the store and promotes the entry.
Without a store ("memory" backend) the memory tier is all there is.
"""

from __future__ import annotations

from typing import Iterator, List, Optional

from cachetools import LRUCache

from mtasts.core.freshness import CacheEntry
from mtasts.store.sqlite import SqliteStore


class PolicyCache:
    def __init__(self, memory_entries: int, store: Optional[SqliteStore] = None) -> None:
        self._memory: LRUCache = LRUCache(maxsize=memory_entries)
        self.store = store
        self.memory_hits = 0
        self.store_hits = 0
        self.misses = 0

    def get(self, domain: str) -> Optional[CacheEntry]:
        entry = self._memory.get(domain)
        if entry is not None:
            self.memory_hits += 1
            return entry
        if self.store is not None:
            entry = self.store.get(domain)
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
            entry = self.store.get(domain)
        return entry

    def put(self, entry: CacheEntry) -> None:
        if self.store is not None:
            self.store.put(entry)
        self._memory[entry.domain] = entry

    def purge(self, domain: str) -> bool:
        in_memory = self._memory.pop(domain, None) is not None
        in_store = self.store.delete(domain) if self.store is not None else False
        return in_memory or in_store

    def purge_all(self) -> int:
        count = len(self._memory)
        self._memory.clear()
        if self.store is not None:
            count = self.store.delete_all()
        return count

    def entries(self) -> Iterator[CacheEntry]:
        if self.store is not None:
            return self.store.entries()
        return iter(sorted(self._memory.values(), key=lambda e: e.domain))

    def due(self, now: float, limit: int) -> List[str]:
        if self.store is not None:
            return self.store.due(now, limit)
        due = [
            e.domain
            for e in self._memory.values()
            if e.valid_policy(now) is not None and e.refresh_at <= now
        ]
        return sorted(due)[:limit]

    def prune(self, before: float) -> int:
        if self.store is None:
            return 0
        return self.store.prune(before)

    @property
    def memory_size(self) -> int:
        return len(self._memory)

    def count(self):
        if self.store is not None:
            return self.store.count()
        entries = list(self._memory.values())
        return len(entries), sum(1 for e in entries if e.cached is not None)

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
