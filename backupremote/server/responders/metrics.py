"""The responder for ``getMetrics``: counters, timings, and what is running now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from twisted.protocols.amp import CommandLocator

from backupremote.protocol.metrics import GetMetrics, ServerMetrics
from backupremote.server.session import RequestContext
from backupremote.protocol.versions import SOFTWARE_VERSION

if TYPE_CHECKING:
    from backupremote.server.core import ServerCore


class MetricsResponders(CommandLocator):
    """Server-wide aggregates only: no run, file or client ids, no names."""

    def __init__(self, core: ServerCore, connection: Any) -> None:
        self.core = core
        self.connection = connection

    @GetMetrics.responder
    def getMetrics(self, request: RequestContext) -> dict[str, Any]:
        core = self.core
        return {"metrics": ServerMetrics(
            serverVersion=SOFTWARE_VERSION,
            startedAt=datetime.fromtimestamp(core.startedAt, timezone.utc),
            uptimeSeconds=round(core.clock.seconds() - core.startedAt, 3),
            runsRunning=core.runs.runningCount,
            runsQueued=core.runs.queuedCount,
            transfersActive=len(core.transfers.active) if core.transfers is not None else 0,
            artifactsStaged=core.artifacts.stagedCount if core.artifacts is not None else 0,
            stagedBytes=core.artifacts.staging.stagedBytes() if core.artifacts is not None else 0,
            counters=core.metrics.snapshot(),
            timings=dict(core.metrics.timings),
        )}
