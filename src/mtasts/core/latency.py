"""Fetch latency as a cumulative-bucket histogram, kept without prometheus_client: an
observation is a few comparisons, and the metrics server reads it when scraped."""

from __future__ import annotations

from typing import List, Tuple

# Fetch latency buckets (seconds): a healthy fetch is tens of ms, the timeout 15 s.
FETCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)


class LatencyHistogram:
    """Cumulative-bucket histogram kept without prometheus_client (cheap to observe)."""

    def __init__(self, buckets: Tuple[float, ...] = FETCH_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(self.buckets):
            if seconds <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += seconds

    def cumulative(self) -> List[Tuple[str, int]]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append((repr(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out
