"""
The run manager: the only way a backup starts on the server.

A client commands ``executeBackup(runId, ...)``; L{RunAdmission} checks the
runId (idempotent: a known runId returns its run, and concurrent duplicates
share one admission), the options, the post-script, capacity and preflight,
then L{RunQueue} queues the run. At most C{maxConcurrent} runs execute at
once, one per database; the rest wait in a bounded FIFO queue. Every state
change is stored; every event is numbered and pushed to the run's
subscribers; every run that ends is counted (L{RunMetrics}). After a crash,
L{recovery} ends the runs left unfinished and sweeps staging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backupremote.protocol.errors import CONFLICT, NOT_FOUND, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import TERMINAL, RunStatus
from backupremote.reactors import IWorkReactor
from backupremote.server.databases.busy import BusyConfigs
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.engines.base import IEngine
from backupremote.server.runs.accounting import RunMetrics
from backupremote.server.runs.admission import RunAdmission
from backupremote.server.runs.collaborators import CheckStagingRoom, Finalize, Produce
from backupremote.server.runs.events import push
from backupremote.server.runs.execution import RunQueue
from backupremote.server.runs.recovery import recoverInterrupted, sweepStrayFolders
from backupremote.server.runs.scripts import PostScripts
from backupremote.server.runs.store import RunStore
from backupremote.server.staging import StagingArea
from backupremote.server.state.metrics import Metrics


class RunManager:
    """Admits, queues, executes, cancels and reports backup runs."""

    def __init__(self, reactor: IWorkReactor, store: RunStore, databases: DatabaseConfigs,
                 produce: Produce, scripts: PostScripts, staging: StagingArea,
                 engines: Mapping[str, IEngine], busy: BusyConfigs, maxConcurrent: int = 2,
                 maxQueued: int = 16, progressInterval: float = 0.25,
                 finalize: Finalize | None = None,
                 checkStagingRoom: CheckStagingRoom | None = None,
                 metrics: Metrics | None = None) -> None:
        self._reactor = reactor
        self._store = store
        self._databases = databases
        self._staging = staging
        #: the runs queued and executing
        self.queue = RunQueue(reactor, store, databases, produce, scripts, staging, engines,
                              busy, RunMetrics(metrics or Metrics(), databases),
                              maxConcurrent=maxConcurrent, maxQueued=maxQueued,
                              finalize=finalize)
        self._admission = RunAdmission(reactor, store, databases, scripts, self.queue,
                                       progressInterval, checkStagingRoom)

    # Commands

    async def execute(self, clientId: str, requestId: str, runId: str, configId: str,
                      options: BackupOptions | None, scheduleId: str | None,
                      connection: Any = None) -> RunStatus:
        """Start the run C{runId} (once: a known runId answers its run)."""
        return await self._admission.execute(clientId, requestId, runId, configId, options,
                                             scheduleId, connection)

    def isActive(self, runId: str) -> bool:
        """Whether C{runId} is queued or running (its status changes without a write)."""
        return runId in self.queue.active

    def status(self, clientId: str, runId: str) -> RunStatus:
        """
        The run C{runId} if C{clientId} may see it (it is its own, or it is
        an admin), else C{NOT_FOUND}, as for a runId that does not exist.
        """
        allows = self._databases.ownership.allows
        run = self.queue.active.get(runId)
        if run is not None and allows(clientId, run.status.clientId):
            return self.queue.live(run)
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
        return self.queue.cancel(runId)

    def subscribe(self, clientId: str, runId: str, afterSeq: int, connection: Any) -> RunStatus:
        """Replay the events after C{afterSeq}, then keep C{connection} informed."""
        current = self.status(clientId, runId)
        for event in self._store.events(runId, afterSeq):
            push(connection, event)
        run = self.queue.active.get(runId)
        if run is not None:
            run.subscribers.add(connection)
        return current

    def forget(self, connection: Any) -> None:
        """A connection is gone: stop pushing to it."""
        for run in self.queue.active.values():
            run.subscribers.discard(connection)

    @property
    def runningCount(self) -> int:
        return self.queue.runningCount

    @property
    def queuedCount(self) -> int:
        return self.queue.queuedCount

    def stop(self) -> None:
        """The server stops: end every run as C{INTERRUPTED}, remove their files."""
        self.queue.stop()

    # Restart

    def recover(self) -> list[str]:
        """
        Runs left unfinished by a crash become C{failed}/C{INTERRUPTED}; their
        staging folders, and any folder of no known run, are removed.
        """
        interrupted = recoverInterrupted(self._reactor, self._store, self._staging)
        sweepStrayFolders(self._store, self._staging)
        return interrupted
