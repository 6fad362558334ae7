"""Bucketed durations, kept without prometheus_client (the server's counters use it)."""

from __future__ import annotations

import bisect
import math

from attrs import define, field

#: Seconds: from a tiny SQLite dump to a half-day of a large database.
DURATION_BUCKETS: tuple[float, ...] = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 43200,
)


@define
class Distribution:
    """Counts of observations per bucket (upper bounds), their sum and count."""

    buckets: tuple[float, ...] = DURATION_BUCKETS
    counts: list[int] = field(default=None)
    total: float = 0.0
    count: int = 0

    def __attrs_post_init__(self) -> None:
        if self.counts is None:
            self.counts = [0] * (len(self.buckets) + 1)  # the last: +Inf

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """C{(le, count)} pairs as Prometheus' histogram buckets want them."""
        pairs, running = [], 0
        for bound, count in zip((*self.buckets, math.inf), self.counts):
            running += count
            pairs.append(("+Inf" if bound == math.inf else _le(bound), running))
        return pairs


def _le(bound: float) -> str:
    return repr(float(bound))
