"""
The events of one run: numbered, stored, throttled, pushed to subscribers.

Progress is sent at most every C{interval} seconds per run, but the last
progress of a stage is always sent before the next stage's first event, and
terminal events are never held back. Every sent event is stored, so a
client that reconnects replays what it missed with ``subscribeRun``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from attrs import evolve
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from backupremote.protocol.runs import (
    ArtifactInfo,
    BackupComplete,
    BackupFailed,
    BackupProgress,
    RunEvent,
)
from backupremote.server.runs.store import RunStore

_log = Logger(namespace="backupremote.server.runs")

PUSHES = {"progress": BackupProgress, "complete": BackupComplete, "failed": BackupFailed}


class RunEventStream:
    """Numbering, throttling, storage and fan-out of one run's events."""

    def __init__(self, runId: str, clock: IReactorTime, store: RunStore,
                 subscribers: Callable[[], set[Any]], interval: float = 0.25,
                 lastSeq: int = 0) -> None:
        self.runId = runId
        self._clock = clock
        self._store = store
        self._subscribers = subscribers
        self.interval = interval
        self.lastSeq = lastSeq
        self._lastSentAt = -1e18
        self._lastSent: RunEvent | None = None
        self._pending: RunEvent | None = None
        self._flushCall: Any = None

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), timezone.utc)

    def progress(self, stage: str, bytesDone: int, totalEstimate: int | None,
                 message: str = "") -> None:
        """Report progress; sent now, or later as the newest of its stage."""
        if self._pending is not None and self._pending.stage != stage:
            self._flush()
        event = RunEvent(self.runId, 0, "progress", stage, bytesDone, self._now(),
                         totalEstimate=totalEstimate, message=message)
        wait = self._lastSentAt + self.interval - self._clock.seconds()
        lastStage = self._lastSent.stage if self._lastSent else None
        if wait <= 0 or lastStage != stage:
            self._cancelFlush()
            self._pending = None
            self._send(event)
        else:
            self._pending = event
            if self._flushCall is None:
                self._flushCall = self._clock.callLater(wait, self._flush)

    def finish(self, kind: str, stage: str, bytesDone: int, message: str,
               errorCode: str | None = None, artifact: ArtifactInfo | None = None) -> None:
        """The run ended: flush held progress, then send the terminal event."""
        self._flush()
        self._send(RunEvent(self.runId, 0, kind, stage, bytesDone, self._now(),
                            message=message, errorCode=errorCode, artifact=artifact))

    def _cancelFlush(self) -> None:
        if self._flushCall is not None and self._flushCall.active():
            self._flushCall.cancel()
        self._flushCall = None

    def _flush(self) -> None:
        self._cancelFlush()
        pending, self._pending = self._pending, None
        if pending is not None:
            self._send(pending)

    def _rate(self, event: RunEvent) -> float | None:
        last = self._lastSent
        if last is None or last.stage != event.stage or event.kind != "progress":
            return None
        seconds = (event.at - last.at).total_seconds()
        return (event.bytes - last.bytes) / seconds if seconds > 0 else None

    def _send(self, event: RunEvent) -> None:
        self.lastSeq += 1
        event = evolve(event, seq=self.lastSeq, rate=self._rate(event))
        self._store.addEvent(event)
        self._lastSent = event
        self._lastSentAt = self._clock.seconds()
        for connection in list(self._subscribers()):
            push(connection, event)


def push(connection: Any, event: RunEvent) -> None:
    """Send C{event} to one connection; a gone connection is not an error."""
    try:
        connection.callRemote(PUSHES[event.kind], event=event)
    except Exception:
        _log.failure("could not push event {seq} of run {runId}",
                     seq=event.seq, runId=event.runId)
