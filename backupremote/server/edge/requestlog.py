"""
Log lines that always say which request, client and peer they belong to.

Fields are passed as structured values (the JSON log keeps them) and are
also part of the text, so the human-readable log is just as traceable.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

_log = Logger(namespace="backupremote.server")


@frozen
class RequestLog:
    """A logger bound to one request (or to a connection, before one)."""

    requestId: str
    clientId: str | None
    peer: str

    def fields(self) -> dict[str, str]:
        """The identifying fields, for loggers elsewhere (the licence verifier)."""
        return {"requestId": self.requestId, "clientId": self.clientId or "-", "peer": self.peer}

    def _emit(self, level: LogLevel, format: str, **fields: Any) -> None:
        _log.emit(level, "[{peer} {clientId} {requestId}] " + format, **self.fields(), **fields)

    def info(self, format: str, **fields: Any) -> None:
        self._emit(LogLevel.info, format, **fields)

    def warn(self, format: str, **fields: Any) -> None:
        self._emit(LogLevel.warn, format, **fields)

    def failure(self, format: str, failure: Failure, **fields: Any) -> None:
        self._emit(LogLevel.critical, format, log_failure=failure, **fields)
