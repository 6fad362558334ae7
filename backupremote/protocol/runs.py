"""
Backup runs: commanded by a client, executed by the server, followed by
events. A run's id is chosen by the client (``uuid5`` of its schedule slot)
so that a retry can never start a second dump.
"""

from __future__ import annotations

from datetime import datetime

from attrs import field, frozen
from twisted.protocols import amp

from backupremote.protocol.features import REMOTE_EXECUTE
from backupremote.protocol.base import Request
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import Structured

#: The states a run ends in (before: queued, running); stages and states are
#: documented in docs/protocol.md.
TERMINAL = frozenset({"completed", "failed", "cancelled"})


@frozen
class StageTiming:
    stage: str
    startedAt: datetime
    endedAt: datetime | None = None
    bytes: int = 0


@frozen
class ArtifactInfo:
    """The staged artifact, addressed by an opaque id (never a server path)."""

    fileId: str
    name: str
    sizeBytes: int
    checksum: str
    digest: str
    #: Whether it can still be downloaded: false once released or expired.
    staged: bool = True


@frozen
class RunStatus:
    """Everything the server knows of a run."""

    runId: str
    databaseConfigId: str
    clientId: str
    options: BackupOptions
    state: str
    stage: str
    scheduleId: str | None = None
    requestId: str | None = None
    queuePosition: int | None = None
    bytesDone: int = 0
    totalEstimate: int | None = None
    createdAt: datetime | None = None
    startedAt: datetime | None = None
    endedAt: datetime | None = None
    errorCode: str | None = None
    errorMessage: str | None = None
    stageTimings: list[StageTiming] = field(factory=list)
    artifact: ArtifactInfo | None = None
    scriptOutput: str | None = None
    lastSeq: int = 0
    duplicate: bool = False


@frozen
class RunEvent:
    """One event of a run, numbered from 1 so a client can resume after C{seq}."""

    runId: str
    seq: int
    kind: str  # "progress", "complete" or "failed"
    stage: str
    bytes: int
    at: datetime
    totalEstimate: int | None = None
    rate: float | None = None
    message: str = ""
    errorCode: str | None = None
    artifact: ArtifactInfo | None = None


class ExecuteBackup(Request):
    """Start (or find, for a known runId) a backup of a stored configuration."""

    commandName = b"executeBackup"
    feature = REMOTE_EXECUTE
    arguments = [
        (b"runId", amp.Unicode()),
        (b"databaseConfigId", amp.Unicode()),
        (b"options", Structured(BackupOptions, optional=True)),
        (b"scheduleId", amp.Unicode(optional=True)),
    ]
    response = [(b"status", Structured(RunStatus, answer=True))]


class CancelBackup(Request):
    """Cancel a queued or running backup; a finished one answers CONFLICT."""

    commandName = b"cancelBackup"
    feature = REMOTE_EXECUTE
    arguments = [(b"runId", amp.Unicode())]
    response = [(b"status", Structured(RunStatus, answer=True))]


class GetExecutionStatus(Request):
    """The status of a run of this client."""

    commandName = b"getExecutionStatus"
    feature = REMOTE_EXECUTE
    arguments = [(b"runId", amp.Unicode())]
    response = [(b"status", Structured(RunStatus, answer=True))]


class SubscribeRun(Request):
    """Replay the run's events after C{afterSeq}, then push new ones live."""

    commandName = b"subscribeRun"
    feature = REMOTE_EXECUTE
    arguments = [(b"runId", amp.Unicode()), (b"afterSeq", amp.Integer(optional=True))]
    response = [(b"status", Structured(RunStatus, answer=True))]


class _RunEventPush(amp.Command):
    arguments = [(b"event", Structured(RunEvent, answer=True))]
    response: list = []
    requiresAnswer = False


class BackupProgress(_RunEventPush):
    """Server to client: progress of a stage (throttled; the last of each stage is sent)."""

    commandName = b"backupProgress"


class BackupComplete(_RunEventPush):
    """Server to client: the run completed; the artifact is staged."""

    commandName = b"backupComplete"


class BackupFailed(_RunEventPush):
    """Server to client: the run failed or was cancelled."""

    commandName = b"backupFailed"
