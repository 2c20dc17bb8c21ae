"""Exemptions (``core.override``): the file's, the command line's (kept with the cache) and
the fleet's, in one table the hot path tests with one truth test when there are none.

An override in force is logged once per OVERRIDE_LOG_EVERY, not per lookup; one that has
expired is removed at its next use, or by the sweep.
"""

from __future__ import annotations

import logging
import time
from typing import Dict, Optional

from mtasts.config import Config
from mtasts.core.override import Override
from mtasts.resolver.counters import Counters
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts.resolver")

# An override in force is logged (WARNING) once per domain in this many seconds, not per lookup.
OVERRIDE_LOG_EVERY = 600.0


def _until(override: Override) -> str:
    return "no end" if override.until is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(override.until))


class Overrides:
    def __init__(self, config: Config, cache: PolicyCache, counters: Counters) -> None:
        self.cache = cache
        self._counters = counters
        # The file's, then the stored ones (mtasts override add) over them.
        self.table: Dict[str, Override] = dict(config.overrides)
        self.table.update((o.domain, o) for o in cache.overrides())
        self._logged: Dict[str, float] = {}

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: the file's overrides anew; the command line's kept."""
        stored = {d: o for d, o in self.table.items() if o.source == "cli"}
        self.table = {**config.overrides, **stored}

    def applying(self, domain: str, now: float, instead_of: bytes) -> Optional[Override]:
        """*domain*'s override in force for a lookup, or None; an expired one is removed. Its
        use is counted, and logged (WARNING, with the answer *instead_of*) once per window."""
        override = self.table.get(domain)
        if override is None:
            return None
        if not override.active(now):
            self._expired(override)
            return None
        self._counters.override_answers += 1
        if now - self._logged.get(domain, -OVERRIDE_LOG_EVERY) >= OVERRIDE_LOG_EVERY:
            self._logged[domain] = now
            log.warning(
                "%s: override in force (%s until %s%s, from %s: %s): answering %r instead of %r",
                domain,
                override.level,
                _until(override),
                ", also over DANE" if override.dane else "",
                override.source,
                override.reason,
                override.level,
                instead_of.decode(errors="replace").strip(),
                extra={"outcome": "override"},
            )
        return override

    def in_force(self, domain: str, now: float) -> Optional[Override]:
        """*domain*'s override in force, read only (no expiry, no count, no log: ``cache export``)."""
        override = self.table.get(domain)
        return override if override is not None and override.active(now) else None

    def fleet_changed(self, domain: str, override: Optional[Override]) -> None:
        """Another host of the fleet added, changed or removed *domain*'s override."""
        current = self.table.get(domain)
        if current is not None and current.source != "cli":
            return  # this host's configuration file decides for this domain
        self._logged.pop(domain, None)
        if override is None:
            if self.table.pop(domain, None) is not None:
                log.warning("%s: override removed (by another host of the fleet)", domain)
        elif override != current:
            self.table[domain] = override
            log.warning("%s: override from another host of the fleet (%s, %s)", domain, override.level, override.reason)

    def _expired(self, override: Override) -> None:
        self.table.pop(override.domain, None)
        self._logged.pop(override.domain, None)
        if override.source == "cli":
            self.cache.delete_override(override.domain)
        log.warning(
            "%s: override (%s, %s) expired: the domain's own policy applies again",
            override.domain,
            override.level,
            override.reason,
        )

    def add(self, override: Override) -> None:
        self.table[override.domain] = override
        self._logged.pop(override.domain, None)  # the next use is logged at once
        self.cache.put_override(override)
        log.warning(
            "%s: override added (%s until %s, %s)", override.domain, override.level, _until(override), override.reason
        )

    def remove(self, domain: str) -> bool:
        removed = self.cache.delete_override(domain)
        override = self.table.get(domain)
        if override is not None and override.source == "cli":
            del self.table[domain]
            removed = True
        if removed:
            log.warning("%s: override removed", domain)
        return removed

    def expire(self, now: float) -> None:
        for override in list(self.table.values()):
            if not override.active(now):
                self._expired(override)
