"""
The run manager: the only way a backup starts on the server.

A client commands ``executeBackup(runId, ...)``; the manager checks the
runId (idempotent: a known runId returns its run, and concurrent duplicates
share one admission), the options, the post-script, capacity and preflight,
then queues the run. At most C{maxConcurrent} runs execute at once, one per
database; the rest wait in a bounded FIFO queue. Every state change is
stored; every event is numbered and pushed to the run's subscribers.
"""

from __future__ import annotations

import re
import shutil
import uuid
from datetime import datetime, timezone
from collections.abc import Mapping
from typing import Any, Awaitable, Callable

from attrs import define, evolve, field
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from backupremote.protocol.errors import (
    CANCELLED,
    CAPACITY_EXCEEDED,
    CONFLICT,
    INTERNAL_ERROR,
    INTERRUPTED,
    NOT_FOUND,
    SCRIPT_FAILED,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import TERMINAL, ArtifactInfo, RunStatus, StageTiming
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.engines.base import IEngine
from backupremote.server.metrics import Metrics
from backupremote.server.runs.events import RunEventStream, push
from backupremote.server.runs.runlog import RunLog
from backupremote.server.runs.scripts import PostScripts, scriptFailure
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
Producer = Callable[..., Awaitable[Any]]


@define(eq=False)
class ActiveRun:
    """A run that is queued or executing, with what only memory holds."""

    status: RunStatus
    events: RunEventStream
    log: RunLog
    subscribers: set[Any] = field(factory=set)
    work: Deferred[Any] | None = None
    task: Deferred[None] | None = None
    serverVersion: str | None = None
    cancelRequested: bool = False


def _endFinalizing(timings: list[StageTiming], now: datetime) -> list[StageTiming]:
    """One "finalizing" entry, from the pipeline's start of it to now."""
    started = next((t.startedAt for t in timings if t.stage == "finalizing"), now)
    kept = [t for t in timings if t.stage != "finalizing"]
    bytesDone = max((t.bytes for t in timings if t.stage == "finalizing"), default=0)
    return [*kept, StageTiming("finalizing", started, now, bytesDone)]


def safeName(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "backup"


class RunManager:
    """Admits, queues, executes, cancels and reports backup runs."""

    def __init__(self, reactor: Any, store: RunStore, databases: DatabaseConfigs,
                 produce: Producer, scripts: PostScripts, staging: StagingArea,
                 engines: Mapping[str, IEngine], maxConcurrent: int = 2,
                 maxQueued: int = 16, progressInterval: float = 0.25,
                 finalize: Callable[..., Awaitable[Any]] | None = None,
                 checkStagingRoom: Callable[[int | None], None] | None = None,
                 metrics: Metrics | None = None) -> None:
        self._reactor = reactor
        self._store = store
        self._databases = databases
        self._produce = produce
        self._scripts = scripts
        self._staging = staging
        self._engines = engines
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
        self.progressInterval = progressInterval
        #: ``finalize(runId, clientId, artifactPath, info, chunks=)``: writes the manifest
        self._finalize = finalize
        #: ``checkStagingRoom(sizeEstimate)`` raises STAGING_FULL
        self._checkStagingRoom = checkStagingRoom
        self._metrics = metrics or Metrics()
        self._active: dict[str, ActiveRun] = {}
        self._queue: list[str] = []
        self._running: set[str] = set()
        self._admitting: dict[str, Deferred[None]] = {}
        self._stopping = False
        self.activeConfigs: set[str] = databases.activeRuns

    # Time and bookkeeping

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)

    def _update(self, run: ActiveRun, artifactPath: str | None = None, **changes: Any) -> None:
        run.status = evolve(run.status, **changes, lastSeq=run.events.lastSeq)
        self._store.save(run.status, artifactPath)

    def _refreshActiveConfigs(self) -> None:
        self.activeConfigs.clear()
        self.activeConfigs.update(r.status.databaseConfigId for r in self._active.values())

    def _live(self, run: ActiveRun) -> RunStatus:
        position = self._queue.index(run.status.runId) + 1 if run.status.runId in self._queue else None
        return evolve(run.status, queuePosition=position, lastSeq=run.events.lastSeq)

    # Commands

    async def execute(self, clientId: str, requestId: str, runId: str, configId: str,
                      options: BackupOptions | None, scheduleId: str | None,
                      connection: Any = None) -> RunStatus:
        for name, value in (("runId", runId), ("scheduleId", scheduleId)):
            if value is not None and not RUN_ID.fullmatch(value):
                raise BackupRemoteError(
                    VALIDATION_FAILED, f"{name} must be 1-128 letters, digits, '.', '_', ':' "
                    "or '-', starting with a letter or digit",
                    details={"fields": {name: "invalid"}})
        while runId in self._admitting:
            await self._admitting[runId]
        existing = self._store.get(runId)
        if existing is not None:
            return self._duplicate(existing, clientId, configId, options, connection)
        admitted: Deferred[None] = Deferred()
        self._admitting[runId] = admitted
        try:
            return await self._admit(clientId, requestId, runId, configId, options,
                                     scheduleId, connection)
        finally:
            del self._admitting[runId]
            admitted.callback(None)

    def _duplicate(self, existing: RunStatus, clientId: str, configId: str,
                   options: BackupOptions | None, connection: Any) -> RunStatus:
        if existing.clientId != clientId:
            raise BackupRemoteError(CONFLICT, "this runId is used by another client; "
                                              "choose another runId")
        if existing.databaseConfigId != configId or (
                options is not None and options != existing.options):
            raise BackupRemoteError(
                CONFLICT, "this runId was already used for a different database or options; "
                          "use a new runId for a different backup")
        run = self._active.get(existing.runId)
        if run is None:
            return evolve(existing, duplicate=True)
        if connection is not None:
            run.subscribers.add(connection)
        return evolve(self._live(run), duplicate=True)

    def _checkCapacity(self) -> None:
        if len(self._running) >= self.maxConcurrent and len(self._queue) >= self.maxQueued:
            raise BackupRemoteError(
                CAPACITY_EXCEEDED, f"{len(self._running)} runs are executing and "
                                   f"{len(self._queue)} waiting, the most this server allows")

    async def _admit(self, clientId: str, requestId: str, runId: str, configId: str,
                     options: BackupOptions | None, scheduleId: str | None,
                     connection: Any) -> RunStatus:
        stored = self._databases.owned(clientId, configId)
        effective = options or stored.backup
        self._databases.checkOptions(stored, effective)
        if effective.postScript is not None:
            self._scripts.find(effective.postScript)
        self._checkCapacity()
        report = await self._databases.preflight(configId, effective)
        if not report.ok:
            first = report.blockers[0]
            raise BackupRemoteError(first.code, f"preflight failed: {first.message}", details={
                "blockers": [{"code": f.code, "message": f.message} for f in report.blockers]})
        self._checkCapacity()
        if self._checkStagingRoom is not None:
            self._checkStagingRoom(report.sizeEstimate)
        status = RunStatus(
            runId=runId, databaseConfigId=configId, clientId=clientId, options=effective,
            state="queued", stage="queued", scheduleId=scheduleId, requestId=requestId,
            createdAt=self._now(), totalEstimate=report.sizeEstimate,
        )
        self._store.insert(status)
        run = ActiveRun(status, RunEventStream(runId, self._reactor, self._store,
                                               lambda: run.subscribers, self.progressInterval),
                        RunLog(runId, scheduleId, clientId))
        run.serverVersion = report.serverVersion
        if connection is not None:
            run.subscribers.add(connection)
        self._active[runId] = run
        self._queue.append(runId)
        self._refreshActiveConfigs()
        run.log.info("queued a backup of {configId} ({compression}, {checksum})",
                     configId=configId, compression=effective.compression,
                     checksum=effective.checksum)
        self._startWaiting()
        return self._live(run)

    def status(self, clientId: str, runId: str) -> RunStatus:
        """
        The run C{runId} if C{clientId} may see it (it is its own, or it is
        an admin), else C{NOT_FOUND}, as for a runId that does not exist.
        """
        allows = self._databases.ownership.allows
        run = self._active.get(runId)
        if run is not None and allows(clientId, run.status.clientId):
            return self._live(run)
        stored = self._store.get(runId)
        if stored is None or not allows(clientId, stored.clientId):
            raise BackupRemoteError(NOT_FOUND, f"no run {runId!r} of this client")
        return stored

    def cancel(self, clientId: str, runId: str) -> RunStatus:
        current = self.status(clientId, runId)
        if current.state in TERMINAL:
            raise BackupRemoteError(CONFLICT, f"the run has already ended ({current.state}): "
                                    "there is nothing to cancel",
                                    details={"state": current.state})
        run = self._active[runId]
        run.cancelRequested = True
        run.log.info("cancel requested")
        if runId in self._queue:
            self._queue.remove(runId)
            self._finish(run, "cancelled", CANCELLED, "cancelled before it started")
        elif run.work is not None:
            run.work.cancel()
        return self._live(run) if runId in self._active else self._store.get(runId)

    def subscribe(self, clientId: str, runId: str, afterSeq: int, connection: Any) -> RunStatus:
        """Replay the events after C{afterSeq}, then keep C{connection} informed."""
        current = self.status(clientId, runId)
        for event in self._store.events(runId, afterSeq):
            push(connection, event)
        run = self._active.get(runId)
        if run is not None:
            run.subscribers.add(connection)
        return current

    def forget(self, connection: Any) -> None:
        """A connection is gone: stop pushing to it."""
        for run in self._active.values():
            run.subscribers.discard(connection)

    # Execution

    def _startWaiting(self) -> None:
        if self._stopping:
            return
        for runId in list(self._queue):
            if len(self._running) >= self.maxConcurrent:
                return
            run = self._active[runId]
            busy = {self._active[r].status.databaseConfigId for r in self._running}
            if run.status.databaseConfigId in busy:
                continue
            self._queue.remove(runId)
            self._running.add(runId)
            run.task = Deferred.fromCoroutine(self._execute(run))

    async def _execute(self, run: ActiveRun) -> None:
        runId = run.status.runId
        folder = self._staging.runFolder(runId)
        keepArtifact = False
        try:
            self._update(run, state="running", stage="starting", startedAt=self._now())
            run.events.progress("starting", 0, run.status.totalEstimate)
            self._staging.makeRunFolder(runId)
            stored = self._databases.stored(run.status.databaseConfigId)
            target = self._databases.target(stored)

            def progress(stage: str, done: int, total: int | None) -> None:
                if run.status.stage != stage:
                    self._update(run, stage=stage, bytesDone=done)
                else:
                    run.status = evolve(run.status, bytesDone=done)
                run.events.progress(stage, done, total)

            baseName = f"{safeName(stored.name)}-{self._now().strftime('%Y%m%dT%H%M%SZ')}"
            if run.cancelRequested:
                raise CancelledError()
            extra = {"serverVersion": run.serverVersion} if run.serverVersion else {}
            run.work = Deferred.fromCoroutine(self._produce(
                self._reactor, self._engines[stored.engine], target, run.status.options,
                self._databases.tools, folder, baseName, progress, run.status.totalEstimate,
                **extra))
            artifact = await run.work
            run.work = None
            info = ArtifactInfo(str(uuid.uuid4()), artifact.name, artifact.sizeBytes,
                                artifact.checksum, artifact.digest)
            keepArtifact = True
            self._update(run, artifactPath=artifact.path.path, artifact=info,
                         bytesDone=artifact.sizeBytes,
                         stageTimings=list(artifact.stageTimings))
            if run.status.options.postScript:
                await self._runScript(run, artifact, info)
            self._update(run, stage="finalizing")
            run.events.progress("finalizing", artifact.sizeBytes, artifact.sizeBytes)
            if self._finalize is not None:
                await self._finalize(runId, run.status.clientId, artifact.path, info,
                                     chunks=artifact.chunks)
            if run.cancelRequested:
                raise CancelledError()
            self._update(run, stageTimings=_endFinalizing(run.status.stageTimings, self._now()))
            self._finish(run, "completed", None, f"staged {info.name} ({info.sizeBytes} bytes)")
        except CancelledError:
            keepArtifact = False
            if self._stopping:
                self._finish(run, "failed", INTERRUPTED, "the server stopped during the run")
            else:
                self._finish(run, "cancelled", CANCELLED, "cancelled")
        except BackupRemoteError as error:
            if error.code != SCRIPT_FAILED:
                keepArtifact = False
            self._finish(run, "failed", error.code, error.message)
        except Exception:
            run.log.failure("the run failed unexpectedly", Failure())
            keepArtifact = False
            self._finish(run, "failed", INTERNAL_ERROR, "the server met an unexpected error")
        finally:
            if not keepArtifact:
                shutil.rmtree(folder.path, ignore_errors=True)
            self._running.discard(runId)
            self._startWaiting()

    async def _runScript(self, run: ActiveRun, artifact: Any, info: ArtifactInfo) -> None:
        name = run.status.options.postScript
        started = self._now()
        self._update(run, stage="script")
        run.events.progress("script", 0, None, message=name or "")
        if run.cancelRequested:
            raise CancelledError()
        run.work = Deferred.fromCoroutine(self._scripts.run(name, {
            "BACKUPREMOTE_RUN_ID": run.status.runId,
            "BACKUPREMOTE_SCHEDULE_ID": run.status.scheduleId or "",
            "BACKUPREMOTE_DATABASE_CONFIG_ID": run.status.databaseConfigId,
            "BACKUPREMOTE_ARTIFACT": artifact.path.path,
            "BACKUPREMOTE_ARTIFACT_NAME": info.name,
            "BACKUPREMOTE_CHECKSUM": f"{info.checksum}:{info.digest}",
        }))
        outcome = await run.work
        run.work = None
        self._update(run, scriptOutput=outcome.output, stageTimings=[
            *run.status.stageTimings, StageTiming("script", started, self._now())])
        if not outcome.ok:
            raise scriptFailure(name, outcome)

    def _finish(self, run: ActiveRun, state: str, errorCode: str | None, message: str) -> None:
        kind = "complete" if state == "completed" else "failed"
        run.events.finish(kind, run.status.stage, run.status.bytesDone, message,
                          errorCode=errorCode, artifact=run.status.artifact)
        self._update(run, state=state, endedAt=self._now(), errorCode=errorCode,
                     errorMessage=None if errorCode is None else message)
        run.log.info("run {state}{detail}", state=state,
                     detail=f": {errorCode}: {message}" if errorCode else "")
        self._count(run.status)
        self._active.pop(run.status.runId, None)
        self._refreshActiveConfigs()

    def _count(self, status: RunStatus) -> None:
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

    @property
    def runningCount(self) -> int:
        return len(self._running)

    @property
    def queuedCount(self) -> int:
        return len(self._queue)

    def stop(self) -> None:
        """The server stops: end every run as C{INTERRUPTED}, remove their files."""
        self._stopping = True
        for runId in list(self._queue):
            self._queue.remove(runId)
            self._finish(self._active[runId], "failed", INTERRUPTED,
                         "the server stopped before the run started")
        for run in list(self._active.values()):
            run.cancelRequested = True
            if run.work is not None:
                run.work.cancel()

    # Restart

    def recover(self) -> list[str]:
        """
        Runs left unfinished by a crash become C{failed}/C{INTERRUPTED}; their
        staging folders, and any folder of no known run, are removed.
        """
        interrupted = []
        now = self._now()
        for status in self._store.unfinished():
            stored = self._store.events(status.runId)
            events = RunEventStream(status.runId, self._reactor, self._store, set,
                                    lastSeq=stored[-1].seq if stored else 0)
            message = "the server stopped while the run was in progress"
            events.finish("failed", status.stage, status.bytesDone, message,
                          errorCode=INTERRUPTED)
            self._store.save(evolve(status, state="failed", endedAt=now, errorCode=INTERRUPTED,
                                    errorMessage=message, lastSeq=events.lastSeq))
            shutil.rmtree(self._staging.runFolder(status.runId).path, ignore_errors=True)
            interrupted.append(status.runId)
        runs = self._staging.runs
        if runs.isdir():
            known = {runId for runId in self._store.runIds()
                     if self._store.artifactPath(runId)}
            for child in runs.children():
                if child.basename() not in known:
                    shutil.rmtree(child.path, ignore_errors=True)
        return interrupted
