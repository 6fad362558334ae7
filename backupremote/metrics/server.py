"""
The server's metrics for Prometheus: read from the counters object that
``getMetrics`` serves (L{backupremote.server.state.metrics.Metrics}) and from the
server's current load, at each scrape: nothing is counted twice.

Counter names of the server (dotted, in its code) become families:

    auth.failed / auth.rate_limited / auth.revoked
        -> backupremote_auth_denied_total{reason}
    auth.succeeded              -> backupremote_auth_succeeded_total
    license.denied.CODE         -> backupremote_license_denied_total{code}
    runs.STATE                  -> backupremote_runs_total{state}
    runs.STATE.CODE             -> backupremote_run_errors_total{state,code}
    errors.CODE                 -> backupremote_error_answers_total{code}
    transfers.started           -> backupremote_transfers_started_total
    transfers.complete|stalled|ended -> backupremote_transfers_ended_total{outcome}
    transfers.resumed           -> backupremote_transfer_resumes_total
    transfers.bytes             -> backupremote_transfer_sent_bytes_total
    anything else               -> backupremote_server_events_total{event}

and durations (C{observe}): C{run} -> backupremote_run_duration_seconds{engine,state},
C{stage.S} -> backupremote_stage_duration_seconds{stage}.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from backupremote.metrics.sampling import onReactor
from backupremote.protocol.versions import SOFTWARE_VERSION

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

    from backupremote.server.edge.components import ServerComponents

_AUTH_DENIED = {"auth.failed": "bad_credentials", "auth.rate_limited": "rate_limited",
                "auth.revoked": "revoked"}
_TRANSFER_ENDS = {"transfers.complete": "complete", "transfers.stalled": "stalled",
                  "transfers.ended": "stopped"}
_SINGLE = {
    "auth.succeeded": ("backupremote_auth_succeeded", "Successful authentications."),
    "transfers.started": ("backupremote_transfers_started",
                          "Artifact transfers started (fresh or resumed)."),
    "transfers.resumed": ("backupremote_transfer_resumes",
                          "Artifact transfers that started past the first chunk (resumes)."),
    "transfers.bytes": ("backupremote_transfer_sent_bytes",
                        "Artifact bytes acknowledged by clients."),
}


class ServerCollector(Collector):
    """
    Families from one server's core (its C{metrics}, C{runs}, C{artifacts},
    C{transfers} and C{connections}), read on the reactor thread.
    """

    def __init__(self, core: ServerComponents, reactor: IReactorFromThreads) -> None:
        self._core = core
        self._reactor = reactor

    @classmethod
    def registryFor(cls, core: ServerComponents,
                    reactor: IReactorFromThreads) -> CollectorRegistry:
        """A registry of this server's own (never the process-global one)."""
        registry = CollectorRegistry()
        registry.register(cls(core, reactor))
        return registry

    def collect(self) -> Iterator[Metric]:
        return iter(onReactor(self._reactor, self._families))

    def _families(self) -> list[Metric]:
        core = self._core
        metrics = core.metrics
        counters = dict(metrics.counters)
        families: list[Metric] = []

        info = GaugeMetricFamily("backupremote_build_info", "The running software.",
                                 labels=["version", "daemon"])
        info.add_metric([SOFTWARE_VERSION, "server"], 1)
        families.append(info)
        families.append(GaugeMetricFamily(
            "backupremote_start_time_seconds", "When the daemon started (Unix time).",
            value=metrics.startedAt))

        denied = CounterMetricFamily("backupremote_auth_denied",
                                     "Authentications refused, by reason.", labels=["reason"])
        for name, reason in _AUTH_DENIED.items():
            denied.add_metric([reason], counters.pop(name, 0))
        families.append(denied)
        for name, (family, text) in _SINGLE.items():
            families.append(CounterMetricFamily(family, text, value=counters.pop(name, 0)))

        license = CounterMetricFamily("backupremote_license_denied",
                                      "Licences refused (at auth or a later command), by code.",
                                      labels=["code"])
        runs = CounterMetricFamily("backupremote_runs", "Runs that ended, by final state.",
                                   labels=["state"])
        runErrors = CounterMetricFamily("backupremote_run_errors",
                                        "Runs that ended with an error, by state and code.",
                                        labels=["state", "code"])
        errors = CounterMetricFamily("backupremote_error_answers",
                                     "Commands answered with an error, by code.",
                                     labels=["code"])
        ends = CounterMetricFamily("backupremote_transfers_ended",
                                   "Artifact transfers that ended, by outcome.",
                                   labels=["outcome"])
        other = CounterMetricFamily("backupremote_server_events",
                                    "Other things the server counts, by name.",
                                    labels=["event"])
        for state in ("completed", "failed", "cancelled"):
            runs.add_metric([state], counters.pop(f"runs.{state}", 0))
        for name, outcome in _TRANSFER_ENDS.items():
            ends.add_metric([outcome], counters.pop(name, 0))
        for name, value in sorted(counters.items()):
            parts = name.split(".")
            if name.startswith("license.denied.") and len(parts) == 3:
                license.add_metric([parts[2]], value)
            elif parts[0] == "runs" and len(parts) == 3:
                runErrors.add_metric([parts[1], parts[2]], value)
            elif parts[0] == "runs" and len(parts) == 2:
                runs.add_metric([parts[1]], value)
            elif parts[0] == "errors" and len(parts) == 2:
                errors.add_metric([parts[1]], value)
            else:
                other.add_metric([name], value)
        families += [license, runs, runErrors, errors, ends, other]
        families += _histograms(metrics)
        families += self._load(core)
        return families

    def _load(self, core: ServerComponents) -> list[Metric]:
        """What the server is doing now."""
        runs, artifacts, transfers = core.runs, core.artifacts, core.transfers
        return [
            GaugeMetricFamily("backupremote_runs_running", "Runs executing now.",
                              value=runs.runningCount),
            GaugeMetricFamily("backupremote_runs_queued", "Runs waiting for a slot.",
                              value=runs.queuedCount),
            GaugeMetricFamily("backupremote_transfers_active", "Artifact transfers in flight.",
                              value=len(transfers.active) if transfers is not None else 0),
            GaugeMetricFamily("backupremote_staged_artifacts",
                              "Artifacts staged, waiting to be downloaded or released.",
                              value=artifacts.stagedCount if artifacts is not None else 0),
            GaugeMetricFamily("backupremote_staged_bytes",
                              "Bytes in the staging folder.",
                              value=artifacts.staging.stagedBytes()
                              if artifacts is not None else 0),
            GaugeMetricFamily("backupremote_connections", "Client connections open now.",
                              value=len(core.connections)),
        ]


def _histograms(metrics: Any) -> list[Metric]:
    run = HistogramMetricFamily(
        "backupremote_run_duration_seconds",
        "Run durations on the server (start to end), by engine and final state.",
        labels=["engine", "state"])
    stage = HistogramMetricFamily(
        "backupremote_stage_duration_seconds", "Durations of run stages, by stage.",
        labels=["stage"])
    for (name, labels), distribution in sorted(getattr(metrics, "distributions", {}).items()):
        given = dict(labels)
        if name == "run":
            run.add_metric([given.get("engine", "unknown"), given.get("state", "unknown")],
                           distribution.cumulative(), distribution.total)
        elif name.startswith("stage."):
            stage.add_metric([name.split(".", 1)[1]], distribution.cumulative(),
                             distribution.total)
    return [run, stage]
