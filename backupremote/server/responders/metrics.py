"""The responder for ``getMetrics``: counters, timings, and what is running now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.protocols.amp import CommandLocator

from backupremote.protocol.metrics import GetMetrics, ServerMetrics
from backupremote.protocol.versions import SOFTWARE_VERSION
from backupremote.server.edge.session import RequestContext
from backupremote.server.runs.manager import RunManager
from backupremote.server.staging.artifacts import StagedArtifacts
from backupremote.server.state.metrics import Metrics
from backupremote.server.transfers.registry import TransferRegistry


class MetricsResponders(CommandLocator):
    """Server-wide aggregates only: no run, file or client ids, no names."""

    def __init__(self, metrics: Metrics, clock: IReactorTime, runs: RunManager,
                 artifacts: StagedArtifacts, transfers: TransferRegistry) -> None:
        self.metrics = metrics
        self.clock = clock
        self.runs = runs
        self.artifacts = artifacts
        self.transfers = transfers

    @GetMetrics.responder
    def getMetrics(self, request: RequestContext) -> dict[str, Any]:
        metrics = self.metrics
        return {"metrics": ServerMetrics(
            serverVersion=SOFTWARE_VERSION,
            startedAt=datetime.fromtimestamp(metrics.startedAt, timezone.utc),
            uptimeSeconds=round(self.clock.seconds() - metrics.startedAt, 3),
            runsRunning=self.runs.runningCount,
            runsQueued=self.runs.queuedCount,
            transfersActive=len(self.transfers.active),
            artifactsStaged=self.artifacts.stagedCount,
            stagedBytes=self.artifacts.staging.stagedBytes(),
            counters=metrics.snapshot(),
            timings=dict(metrics.timings),
        )}
