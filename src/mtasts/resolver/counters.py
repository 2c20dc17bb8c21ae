"""What the resolver counts: plain integers, read as one snapshot by ``mtasts cache stats``
and by ``/metrics`` (nothing here runs per lookup beyond an increment)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from mtasts.core.latency import LatencyHistogram


@dataclass
class Counters:
    lookups: int = 0
    answered_from_cache: int = 0
    discoveries: int = 0
    fetch_ok: int = 0
    fetch_failed: int = 0
    refresh_failed: int = 0
    internal_errors: int = 0
    dane_checks: int = 0
    refresh_failed_enforced: int = 0
    unknown_map_lookups: int = 0
    override_answers: int = 0
    resource_faults: int = 0  # lookups answered TEMP for EMFILE, ENOBUFS, ENOMEM
    busy: int = 0  # lookups answered TEMP: MAX_WAITING_LOOKUPS were already waiting
    downgrades: int = 0
    # change kind ("id", "mode", "mx", "max_age", "txt-gone", "dane") -> changes seen
    policy_changes: Dict[str, int] = field(default_factory=dict)
    by_failure: Dict[str, int] = field(default_factory=dict)  # fetch failure kind -> failures
    # (map, the answer's first 12 bytes, which name its kind) -> answers given
    answers: Dict[Tuple[str, bytes], int] = field(default_factory=dict)
    fetch_latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def answered(self, map_name: str, reply: bytes) -> bytes:
        key = (map_name, reply[:12])
        self.answers[key] = self.answers.get(key, 0) + 1
        return reply

    def snapshot(self) -> Dict[str, Any]:
        """Every counter that JSON can carry, by the names ``cache stats --json`` shows; the
        metrics add ``answers`` and ``fetch_latency``, which it cannot."""
        return {
            "lookups": self.lookups,
            "answered_from_cache": self.answered_from_cache,
            "discoveries": self.discoveries,
            "fetch_ok": self.fetch_ok,
            "fetch_failed": self.fetch_failed,
            "fetch_failures_by_kind": dict(self.by_failure),
            "refresh_failed": self.refresh_failed,
            "refresh_failed_enforced": self.refresh_failed_enforced,
            "dane_checks": self.dane_checks,
            "internal_errors": self.internal_errors,
            "unknown_map_lookups": self.unknown_map_lookups,
            "override_answers": self.override_answers,
            "resource_faults": self.resource_faults,
            "busy": self.busy,
            "policy_changes": dict(self.policy_changes),
            "downgrades": self.downgrades,
        }
