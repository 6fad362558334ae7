"""Counters and timings the server keeps about itself, served by ``getMetrics``."""

from __future__ import annotations

from collections import Counter

from backupremote.metrics.distribution import Distribution
from backupremote.protocol.metrics import TimingSummary


class Metrics:
    """Named monotonic counters, and summaries of named durations."""

    def __init__(self, startedAt: float = 0.0) -> None:
        #: when the server started (its clock's seconds), for C{getMetrics}
        self.startedAt = startedAt
        self.counters: Counter[str] = Counter()
        self.timings: dict[str, TimingSummary] = {}
        #: bucketed durations by name and labels, for Prometheus
        #: (L{backupremote.metrics.ServerCollector})
        self.distributions: dict[tuple[str, tuple[tuple[str, str], ...]], Distribution] = {}

    def increment(self, name: str, amount: int = 1) -> None:
        self.counters[name] += amount

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        """
        Add one duration of kind C{name}; C{labels} (bounded values such as
        an engine or a state) split its Prometheus histogram, not its summary.
        """
        key = (name, tuple(sorted(labels.items())))
        distribution = self.distributions.get(key)
        if distribution is None:
            distribution = self.distributions[key] = Distribution()
        distribution.observe(seconds)
        seen = self.timings.get(name)
        if seen is None:
            self.timings[name] = TimingSummary(1, seconds, seconds, seconds)
        else:
            self.timings[name] = TimingSummary(seen.count + 1, seen.totalSeconds + seconds,
                                               max(seen.maxSeconds, seconds), seconds)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counters)
