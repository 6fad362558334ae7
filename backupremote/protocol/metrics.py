"""``getMetrics``: the server's counters and timings, aggregated (no ids, no names)."""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen

from backupremote.protocol.base import Request
from backupremote.protocol.structured import Structured


@frozen
class TimingSummary:
    """Durations of one kind (a run stage, a whole run) since the server started."""

    count: int
    totalSeconds: float
    maxSeconds: float
    lastSeconds: float


@frozen
class ServerMetrics:
    """What the server has done since it started, and what it is doing now."""

    serverVersion: str
    startedAt: datetime
    uptimeSeconds: float
    runsRunning: int
    runsQueued: int
    transfersActive: int
    artifactsStaged: int
    stagedBytes: int
    counters: dict[str, int] = field(factory=dict)
    timings: dict[str, TimingSummary] = field(factory=dict)


class GetMetrics(Request):
    """The server's metrics (needs the licence feature ``remote.control``)."""

    commandName = b"getMetrics"
    arguments: list = []
    response = [(b"metrics", Structured(ServerMetrics, answer=True))]
