"""Log lines of a run: each carries the runId, scheduleId and clientId."""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

_log = Logger(namespace="backupremote.server.runs")


@frozen
class RunLog:
    runId: str
    scheduleId: str | None
    clientId: str

    def _emit(self, level: LogLevel, format: str, **fields: Any) -> None:
        _log.emit(level, "[run {runId} {clientId} {scheduleId}] " + format,
                  runId=self.runId, scheduleId=self.scheduleId or "-",
                  clientId=self.clientId, **fields)

    def info(self, format: str, **fields: Any) -> None:
        self._emit(LogLevel.info, format, **fields)

    def failure(self, format: str, failure: Failure | None = None, **fields: Any) -> None:
        """A critical line with C{failure} (by default, the exception being handled)."""
        _log.failure("[run {runId} {clientId} {scheduleId}] " + format, failure,
                     runId=self.runId, scheduleId=self.scheduleId or "-",
                     clientId=self.clientId, **fields)
