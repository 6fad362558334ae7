"""
Queueing and execution: at most C{maxConcurrent} runs execute at once, one
per database, the rest wait in a bounded FIFO queue; each run goes through
the pipeline, its post-script and finalizing, and every state change is
stored.

A run given a slot takes it at once (the counts, the busy databases and
cancellation see it), but its pipeline starts two reactor turns later
(L{RunQueue._scheduleStarts}) and once its record is on the disk
(L{ActiveRun.recorded}): the admission that queued it is answered, and the
answer sent, first. Ten runs commanded at once of one server used to
wait, each, for the pipelines started by the admissions before it.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from attrs import evolve
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall

from backupremote.protocol.errors import (
    CANCELLED,
    CAPACITY_EXCEEDED,
    INTERNAL_ERROR,
    INTERRUPTED,
    SCRIPT_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.runs import ArtifactInfo, RunStatus, StageTiming
from backupremote.reactors import IWorkReactor
from backupremote.server.databases.busy import BusyConfigs
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.engines.base import IEngine
from backupremote.server.pipeline.artifact import Artifact
from backupremote.server.runs.accounting import RunMetrics
from backupremote.server.runs.active import ActiveRun
from backupremote.server.runs.collaborators import Finalize, Produce
from backupremote.server.runs.scripts import PostScripts, scriptFailure
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea


def _endFinalizing(timings: list[StageTiming], now: datetime) -> list[StageTiming]:
    """One "finalizing" entry, from the pipeline's start of it to now."""
    started = next((t.startedAt for t in timings if t.stage == "finalizing"), now)
    kept = [t for t in timings if t.stage != "finalizing"]
    bytesDone = max((t.bytes for t in timings if t.stage == "finalizing"), default=0)
    return [*kept, StageTiming("finalizing", started, now, bytesDone)]


def safeName(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "backup"


class RunQueue:
    """The runs in memory: queued ones wait their turn, executing ones run to their end."""

    def __init__(self, reactor: IWorkReactor, store: RunStore, databases: DatabaseConfigs,
                 produce: Produce, scripts: PostScripts, staging: StagingArea,
                 engines: Mapping[str, IEngine], busy: BusyConfigs, accounting: RunMetrics,
                 maxConcurrent: int = 2, maxQueued: int = 16,
                 finalize: Finalize | None = None) -> None:
        self._reactor = reactor
        self._store = store
        self._databases = databases
        self._produce = produce
        self._scripts = scripts
        self._staging = staging
        self._engines = engines
        self._accounting = accounting
        self.maxConcurrent = maxConcurrent
        self.maxQueued = maxQueued
        self._finalize = finalize
        #: the runs queued or executing, by runId
        self.active: dict[str, ActiveRun] = {}
        self._waiting: list[str] = []
        self._running: set[str] = set()
        #: the runs given a slot whose pipeline has not started yet, in order
        self._starting: dict[str, ActiveRun] = {}
        self._startCall: IDelayedCall | None = None
        self._stopping = False
        #: the configurations the runs in C{active} use, for deletion to refuse
        self._busy = busy

    # Time and bookkeeping

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)

    def _update(self, run: ActiveRun, artifactPath: str | None = None, **changes: Any) -> None:
        run.status = evolve(run.status, **changes, lastSeq=run.events.lastSeq)
        self._store.save(run.status, artifactPath)

    def _refreshBusyConfigs(self) -> None:
        self._busy.using(r.status.databaseConfigId for r in self.active.values())

    def live(self, run: ActiveRun) -> RunStatus:
        """The run's status with its place in the queue and its last event."""
        runId = run.status.runId
        position = self._waiting.index(runId) + 1 if runId in self._waiting else None
        return evolve(run.status, queuePosition=position, lastSeq=run.events.lastSeq)

    @property
    def runningCount(self) -> int:
        return len(self._running)

    @property
    def queuedCount(self) -> int:
        return len(self._waiting)

    # Admitted runs

    def checkCapacity(self) -> None:
        """C{CAPACITY_EXCEEDED} when every execution slot and queue place is taken."""
        if len(self._running) >= self.maxConcurrent and len(self._waiting) >= self.maxQueued:
            raise BackupRemoteError(
                CAPACITY_EXCEEDED, f"{len(self._running)} runs are executing and "
                                   f"{len(self._waiting)} waiting, the most this server allows")

    def enqueue(self, run: ActiveRun) -> None:
        """An admitted run waits its turn (it may start at once)."""
        self.active[run.status.runId] = run
        self._waiting.append(run.status.runId)
        self._refreshBusyConfigs()
        self._startWaiting()

    def cancel(self, runId: str) -> RunStatus:
        """Cancel the unfinished run C{runId}: a queued one ends now, an executing one stops."""
        run = self.active[runId]
        run.cancelRequested = True
        run.log.info("cancel requested")
        if runId in self._waiting:
            self._waiting.remove(runId)
            self._finish(run, "cancelled", CANCELLED, "cancelled before it started")
        elif runId in self._starting:
            del self._starting[runId]
            self._running.discard(runId)
            self._finish(run, "cancelled", CANCELLED, "cancelled before it started")
            self._startWaiting()
        elif run.work is not None:
            run.work.cancel()
        if runId in self.active:
            return self.live(run)
        return self._store.get(runId) or run.status

    def stop(self) -> None:
        """The server stops: end every run as C{INTERRUPTED}, remove their files."""
        self._stopping = True
        for runId in list(self._waiting):
            self._waiting.remove(runId)
            self._finish(self.active[runId], "failed", INTERRUPTED,
                         "the server stopped before the run started")
        if self._startCall is not None and self._startCall.active():
            self._startCall.cancel()
        self._startCall = None
        starting, self._starting = self._starting, {}
        for runId, run in starting.items():
            self._running.discard(runId)
            self._finish(run, "failed", INTERRUPTED, "the server stopped before the run started")
        for run in list(self.active.values()):
            run.cancelRequested = True
            if run.work is not None:
                run.work.cancel()

    # Execution

    def _startWaiting(self) -> None:
        if self._stopping:
            return
        for runId in list(self._waiting):
            if len(self._running) >= self.maxConcurrent:
                break
            run = self.active[runId]
            busy = {self.active[r].status.databaseConfigId for r in self._running}
            if run.status.databaseConfigId in busy:
                continue
            self._waiting.remove(runId)
            self._running.add(runId)
            self._starting[runId] = run
            if run.recorded is not None and not run.recorded.done:
                # its start waits for it (a failed wait too: the run stays admitted)
                run.recorded.when().addBoth(lambda _: self._scheduleStarts())
        self._scheduleStarts()

    def _scheduleStarts(self) -> None:
        """
        Start the pipelines of the runs given a slot, two reactor turns from
        now: a reactor sends what was written (the admissions' answers) in
        the I/O step between two turns' timed calls, so the answers leave
        before the pipelines' work (run folder, children) begins.
        """
        if not self._starting or self._startCall is not None:
            return

        def secondTurn() -> None:
            self._startCall = self._reactor.callLater(0, self._startPipelines)

        self._startCall = self._reactor.callLater(0, secondTurn)

    def _startPipelines(self) -> None:
        self._startCall = None
        ready = [run for run in self._starting.values()
                 if run.recorded is None or run.recorded.done]
        for run in ready:
            del self._starting[run.status.runId]
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
                await self._runScript(run, run.status.options.postScript, artifact, info)
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
            run.log.failure("the run failed unexpectedly")
            keepArtifact = False
            self._finish(run, "failed", INTERNAL_ERROR, "the server met an unexpected error")
        finally:
            if not keepArtifact:
                shutil.rmtree(folder.path, ignore_errors=True)
            self._running.discard(runId)
            self._startWaiting()

    async def _runScript(self, run: ActiveRun, name: str, artifact: Artifact,
                         info: ArtifactInfo) -> None:
        started = self._now()
        self._update(run, stage="script")
        run.events.progress("script", 0, None, message=name)
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
        self._accounting.ended(run.status)
        self.active.pop(run.status.runId, None)
        self._refreshBusyConfigs()
