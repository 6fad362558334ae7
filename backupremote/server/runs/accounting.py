"""A run's end in the server's metrics: counted by state and error, timed by stage."""

from __future__ import annotations

from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.runs import RunStatus
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.state.metrics import Metrics


class RunMetrics:
    """Counts and times the runs that end."""

    def __init__(self, metrics: Metrics, databases: DatabaseConfigs) -> None:
        self._metrics = metrics
        self._databases = databases

    def ended(self, status: RunStatus) -> None:
        """A run ended: count it by state (and error), time it and its stages."""
        self._metrics.increment(f"runs.{status.state}")
        if status.errorCode:
            self._metrics.increment(f"runs.{status.state}.{status.errorCode}")
        for timing in status.stageTimings:
            if timing.endedAt is not None:
                self._metrics.observe(f"stage.{timing.stage}",
                                      (timing.endedAt - timing.startedAt).total_seconds())
        if status.startedAt is not None and status.endedAt is not None:
            self._metrics.observe("run", (status.endedAt - status.startedAt).total_seconds(),
                                  engine=self._engineOf(status), state=status.state)

    def _engineOf(self, status: RunStatus) -> str:
        """The run's engine, for its metrics (C{unknown} once its configuration is gone)."""
        try:
            return self._databases.stored(status.databaseConfigId).engine
        except BackupRemoteError:
            return "unknown"
