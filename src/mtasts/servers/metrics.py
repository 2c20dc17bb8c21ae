"""Prometheus metrics on ``[metrics] listen`` (the optional ``prometheus-client`` package).

Nothing here runs per lookup: the resolver, cache and servers keep plain counters, and a
collector turns them into metric families when Prometheus scrapes. Cached policies by
mode come from the store's own scan, run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from mtasts.core.latency import LatencyHistogram
from mtasts.errors import StoreError

log = logging.getLogger("mtasts.metrics")

# The first bytes of an answer name its kind (bounded label values, not whole answers).
_ANSWER_KINDS = (
    (b"NOTFOUND", "notfound"),
    (b"OK secure", "secure"),
    (b"OK dane-only", "dane-only"),
    (b"OK dane", "dane"),
    (b"OK may", "may"),
    (b"OK encrypt", "encrypt"),
    (b"TEMP", "temp"),
    (b"PERM", "perm"),
)


def answer_kind(reply: bytes) -> str:
    for prefix, kind in _ANSWER_KINDS:
        if reply.startswith(prefix):
            return kind
    return "other"


class ModeCounts:
    """Valid cached policies per mode, from *count* (the store's scan, run in a thread) at most
    every *max_age* seconds."""

    def __init__(self, count: Callable[[float], Dict[str, int]], max_age: float = 30.0) -> None:
        self._count = count
        self.max_age = max_age
        self._value: Dict[str, int] = {}
        self._at = 0.0

    async def get(self) -> Dict[str, int]:
        if time.monotonic() - self._at >= self.max_age:
            loop = asyncio.get_running_loop()
            try:
                self._value = await loop.run_in_executor(None, self._count, time.time())
            except StoreError as exc:  # the store maps sqlite3's errors
                log.warning("metrics: cannot count cached policies: %s", exc)
            self._at = time.monotonic()
        return self._value


class MtastsCollector:
    """A prometheus_client collector over the daemon's own counters."""

    def __init__(self, snapshot: Callable[[], Dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        s = self._snapshot()
        lookups = CounterMetricFamily(
            "mtasts_lookups", "Socketmap lookups answered, by map and answer kind", labels=["map", "answer"]
        )
        merged: Dict[Tuple[str, str], int] = {}
        for (map_name, head), count in s["answers"].items():
            key = (map_name, answer_kind(head))
            merged[key] = merged.get(key, 0) + count
        for (map_name, kind), count in sorted(merged.items()):
            lookups.add_metric([map_name, kind], count)
        yield lookups
        hits = CounterMetricFamily("mtasts_cache_hits", "Cache lookups served, by tier", labels=["tier"])
        for tier, count in s["cache_hits"].items():
            hits.add_metric([tier], count)
        yield hits
        fetches = CounterMetricFamily("mtasts_fetches", "Policy fetches, by outcome", labels=["outcome"])
        fetches.add_metric(["ok"], s["fetch_ok"])
        for kind, count in sorted(s["fetch_failures_by_kind"].items()):
            fetches.add_metric([kind], count)
        yield fetches
        hist: LatencyHistogram = s["fetch_latency"]
        latency = HistogramMetricFamily("mtasts_fetch_duration_seconds", "Policy fetch duration")
        latency.add_metric([], hist.cumulative(), hist.total)
        yield latency
        policies = GaugeMetricFamily("mtasts_cached_policies", "Valid cached policies, by mode", labels=["mode"])
        for mode, count in sorted(s["policies_by_mode"].items()):
            policies.add_metric([mode], count)
        yield policies
        yield CounterMetricFamily(
            "mtasts_refresh_failures_enforced",
            "Failed refreshes of cached enforce policies",
            value=s["refresh_failed_enforced"],
        )
        yield CounterMetricFamily("mtasts_redis_errors", "Failed Redis operations", value=s["redis_errors"])
        yield GaugeMetricFamily("mtasts_open_connections", "Open socketmap connections", value=s["connections"])
        yield CounterMetricFamily("mtasts_dane_checks", "DANE checks run", value=s["dane_checks"])
        yield CounterMetricFamily(
            "mtasts_internal_errors", "Internal errors (TEMP answers)", value=s["internal_errors"]
        )
        yield CounterMetricFamily(
            "mtasts_resource_faults",
            "Lookups answered TEMP for EMFILE, ENOBUFS or ENOMEM",
            value=s.get("resource_faults", 0),
        )
        yield CounterMetricFamily(
            "mtasts_busy_answers",
            "Lookups answered TEMP: too many already waited for the network",
            value=s.get("busy", 0),
        )
        yield CounterMetricFamily(
            "mtasts_store_errors",
            "Failed cache store reads and writes (answered from memory)",
            value=s.get("store_errors", 0),
        )
        yield CounterMetricFamily(
            "mtasts_protocol_errors",
            "Socketmap connections closed for malformed netstrings",
            value=s.get("protocol_errors", 0),
        )
        yield CounterMetricFamily(
            "mtasts_unknown_map_lookups",
            "Lookups for a map name without a profile",
            value=s.get("unknown_map_lookups", 0),
        )
        yield CounterMetricFamily(
            "mtasts_override_answers", "Answers an override (mtasts override) gave", value=s.get("override_answers", 0)
        )
        yield GaugeMetricFamily("mtasts_overrides_active", "Overrides in force", value=s.get("overrides_active", 0))
        changes = CounterMetricFamily(
            "mtasts_policy_changes", "Changes of cached policies and DANE states", labels=["change"]
        )
        for kind, count in sorted(s.get("policy_changes", {}).items()):
            changes.add_metric([kind], count)
        yield changes
        yield CounterMetricFamily(
            "mtasts_policy_downgrades",
            "Downgrades: a mode that fell, a vanished record, DANE gone",
            value=s.get("downgrades", 0),
        )


class MetricsServer:
    """HTTP ``GET /metrics`` in Prometheus' text format, on the daemon's event loop."""

    def __init__(
        self, host: str, port: int, snapshot: Callable[[], Dict[str, Any]], mode_counts: Optional[ModeCounts]
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.host, self.port = host, port
        self._snapshot = snapshot
        self._modes = mode_counts
        self._last_modes: Dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MtastsCollector(self._full_snapshot))
        self._runner: Optional[Any] = None

    def _full_snapshot(self) -> Dict[str, Any]:
        s = self._snapshot()
        s["policies_by_mode"] = self._last_modes
        return s

    async def _handle(self, _request: Any) -> Any:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._modes is not None:
            self._last_modes = await self._modes.get()
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        # SO_REUSEPORT: a daemon started with --takeover serves metrics beside this one.
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True, reuse_port=True)
        await site.start()
        log.info("metrics on http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
