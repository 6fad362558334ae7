"""
Log lines that always say which request, client and peer they belong to.

Fields are passed as structured values (the JSON log keeps them) and are
also part of the text, so the human-readable log is just as traceable.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any, Iterator

from attrs import define, field, frozen
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


@define
class RequestIds:
    """
    Ids for the requests that come without one: UUID-shaped, a random
    prefix for the server's life and a counter (a C{uuid4} for each request
    took 2% of the reactor's time with 200 clients asking).
    """

    prefix: str = field(factory=lambda: str(uuid.uuid4())[:24])
    _counter: Iterator[int] = field(factory=itertools.count, init=False, repr=False)

    def next(self) -> str:
        return f"{self.prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
