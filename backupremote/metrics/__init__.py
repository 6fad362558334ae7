"""
Prometheus metrics, the same code in both daemons.

Each daemon owns one L{CollectorRegistry} (never the process-global one, so
two daemons, or many tests, share a process without colliding) and serves
it with C{prometheus_client}'s Twisted C{MetricsResource} on the endpoint
of C{[metrics] listen} (L{MetricsService}; off by default).

    server: L{ServerCollector} reads the server's counters object
            (L{backupremote.server.metrics.Metrics}, also behind
            ``getMetrics``) and its current load: nothing is counted twice.
    client: L{ClientMetrics}, a small API the client's parts call
            (the job runner, the delivery queue, the scheduler, the daemon).

Names follow DESIGN.md ("Metrics") and Prometheus conventions; no label
takes an unbounded value (no run, file or request ids). docs/operations.md
lists them all.
"""

from backupremote.metrics.client import ClientMetrics, addClientMetrics
from backupremote.metrics.config import MetricsConfig, parseMetrics
from backupremote.metrics.distribution import DURATION_BUCKETS, Distribution
from backupremote.metrics.endpoint import MetricsService
from backupremote.metrics.server import ServerCollector

__all__ = [
    "DURATION_BUCKETS", "ClientMetrics", "Distribution", "MetricsConfig", "MetricsService",
    "ServerCollector", "addClientMetrics", "parseMetrics",
]
