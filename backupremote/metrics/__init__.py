"""
Prometheus metrics, the same code in both daemons.

Each daemon owns one L{CollectorRegistry} (never the process-global one, so
two daemons, or many tests, share a process without colliding) and serves
it with C{prometheus_client}'s Twisted C{MetricsResource} on the endpoint
of C{[metrics] listen} (L{MetricsService}; off by default).

    server: L{ServerCollector} reads the server's counters object
            (L{backupremote.server.state.metrics.Metrics}, also behind
            ``getMetrics``) and its current load: nothing is counted twice.
    client: L{ClientMetrics}, a small API the client's parts call
            (the job runner, the delivery queue, the scheduler, the daemon).

Names follow DESIGN.md ("Metrics") and Prometheus conventions; no label
takes an unbounded value (no run, file or request ids). docs/operations.md
lists them all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backupremote.metrics.client import ClientMetrics, addClientMetrics
    from backupremote.metrics.config import MetricsConfig, parseMetrics
    from backupremote.metrics.distribution import DURATION_BUCKETS, Distribution
    from backupremote.metrics.endpoint import MetricsService
    from backupremote.metrics.server import ServerCollector

#: name -> its module, imported on first use: client.toml's [metrics] is
#: parsed by every CLI command, which needs neither prometheus_client nor
#: twisted.web (backupremote.metrics.config imports neither)
_EXPORTS = {
    "ClientMetrics": "backupremote.metrics.client",
    "addClientMetrics": "backupremote.metrics.client",
    "MetricsConfig": "backupremote.metrics.config",
    "parseMetrics": "backupremote.metrics.config",
    "DURATION_BUCKETS": "backupremote.metrics.distribution",
    "Distribution": "backupremote.metrics.distribution",
    "MetricsService": "backupremote.metrics.endpoint",
    "ServerCollector": "backupremote.metrics.server",
}

__all__ = [
    "DURATION_BUCKETS", "ClientMetrics", "Distribution", "MetricsConfig", "MetricsService",
    "ServerCollector", "addClientMetrics", "parseMetrics",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
