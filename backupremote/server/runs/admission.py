"""
Admission and idempotency: the checks a run passes before it is queued.

A runId names one backup: a known runId returns its run (C{duplicate}), a
runId another client or another backup used is a C{CONFLICT}, and
concurrent requests with one runId share one admission. A new run passes
the options, the post-script, capacity, preflight and the staging room,
then is stored C{queued} and queued; it is answered once its record is on
the disk.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from backupremote.protocol.errors import CONFLICT, VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.outcome import Outcome
from backupremote.protocol.runs import RunStatus
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.runs.active import ActiveRun
from backupremote.server.runs.collaborators import CheckStagingRoom
from backupremote.server.runs.events import RunEventStream
from backupremote.server.runs.execution import RunQueue
from backupremote.server.runs.runlog import RunLog
from backupremote.server.runs.scripts import PostScripts
from backupremote.server.runs.store import RunStore

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def checkRunIds(runId: str, scheduleId: str | None) -> None:
    """C{VALIDATION_FAILED} unless both ids are 1-128 safe characters."""
    for name, value in (("runId", runId), ("scheduleId", scheduleId)):
        if value is not None and not RUN_ID.fullmatch(value):
            raise BackupRemoteError(
                VALIDATION_FAILED, f"{name} must be 1-128 letters, digits, '.', '_', ':' "
                "or '-', starting with a letter or digit",
                details={"fields": {name: "invalid"}})


class RunAdmission:
    """Admits new runs into the L{RunQueue}, once per runId."""

    def __init__(self, reactor: IReactorTime, store: RunStore, databases: DatabaseConfigs,
                 scripts: PostScripts, queue: RunQueue, progressInterval: float = 0.25,
                 checkStagingRoom: CheckStagingRoom | None = None) -> None:
        self._reactor = reactor
        self._store = store
        self._databases = databases
        self._scripts = scripts
        self._queue = queue
        self.progressInterval = progressInterval
        self._checkStagingRoom = checkStagingRoom
        self._admitting: dict[str, Deferred[None]] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)

    async def execute(self, clientId: str, requestId: str, runId: str, configId: str,
                      options: BackupOptions | None, scheduleId: str | None,
                      connection: Any = None) -> RunStatus:
        """The run C{runId}: the one already known, else a new one, queued."""
        checkRunIds(runId, scheduleId)
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
        run = self._queue.active.get(existing.runId)
        if run is None:
            return evolve(existing, duplicate=True)
        if connection is not None:
            run.subscribers.add(connection)
        return evolve(self._queue.live(run), duplicate=True)

    async def _admit(self, clientId: str, requestId: str, runId: str, configId: str,
                     options: BackupOptions | None, scheduleId: str | None,
                     connection: Any) -> RunStatus:
        stored = self._databases.owned(clientId, configId)
        effective = options or stored.backup
        self._databases.checkOptions(stored, effective)
        if effective.postScript is not None:
            self._scripts.find(effective.postScript)
        self._queue.checkCapacity()
        report = await self._databases.preflight(configId, effective)
        if not report.ok:
            first = report.blockers[0]
            raise BackupRemoteError(first.code, f"preflight failed: {first.message}", details={
                "blockers": [{"code": f.code, "message": f.message} for f in report.blockers]})
        self._queue.checkCapacity()
        if self._checkStagingRoom is not None:
            self._checkStagingRoom(report.sizeEstimate)
        status = RunStatus(
            runId=runId, databaseConfigId=configId, clientId=clientId, options=effective,
            state="queued", stage="queued", scheduleId=scheduleId, requestId=requestId,
            createdAt=self._now(), totalEstimate=report.sizeEstimate,
        )
        # committed now (a duplicate finds it), on the disk when this fires
        onDisk = Outcome[None]()
        self._store.record(status).addCallbacks(onDisk.succeed, onDisk.fail)
        run = ActiveRun(status, RunEventStream(runId, self._reactor, self._store,
                                               lambda: run.subscribers, self.progressInterval),
                        RunLog(runId, scheduleId, clientId))
        run.serverVersion = report.serverVersion
        run.recorded = onDisk
        if connection is not None:
            run.subscribers.add(connection)
        run.log.info("queued a backup of {configId} ({compression}, {checksum})",
                     configId=configId, compression=effective.compression,
                     checksum=effective.checksum)
        self._queue.enqueue(run)  # now: capacity and the busy rule count it at once
        # The answer promises the record is on the disk. Should the wait fail,
        # the run stays admitted: a retry with its runId answers it.
        await onDisk.when()
        return self._queue.live(run)
