"""Responders for backup runs: execute, cancel, status, subscribe."""

from __future__ import annotations

from typing import Any, cast

from twisted.protocols.amp import CommandLocator

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import CancelBackup, ExecuteBackup, GetExecutionStatus, SubscribeRun
from backupremote.protocol.structured import Structured
from backupremote.server.edge.session import RequestContext
from backupremote.server.runs.manager import RunManager
from backupremote.server.state.changes import StampedCache

#: How a run's status travels, to encode a finished run's once per change.
_STATUS = cast(Structured, dict(GetExecutionStatus.response)[b"status"])


class RunResponders(CommandLocator):
    """Runs start only here, on a client's command."""

    def __init__(self, runs: RunManager, connection: Any, answers: StampedCache[Any]) -> None:
        self.runs = runs
        self.connection = connection
        self._answers = answers

    @ExecuteBackup.responder
    async def execute(self, request: RequestContext, runId: str, databaseConfigId: str,
                      options: BackupOptions | None, scheduleId: str | None) -> dict[str, Any]:
        status = await self.runs.execute(
            request.session.clientId, request.requestId, runId, databaseConfigId,
            options, scheduleId, self.connection)
        request.log.info("executeBackup {runId}: {state}{duplicate}", runId=runId,
                         state=status.state, duplicate=" (duplicate)" if status.duplicate else "")
        return {"status": status}

    @CancelBackup.responder
    def cancel(self, request: RequestContext, runId: str) -> dict[str, Any]:
        return {"status": self.runs.cancel(request.session.clientId, runId)}

    @GetExecutionStatus.responder
    def status(self, request: RequestContext, runId: str) -> dict[str, Any]:
        clientId = request.session.clientId
        assert clientId is not None  # the gate lets only sessions that authenticated here
        if self.runs.isActive(runId):
            return {"status": self.runs.status(clientId, runId)}
        # a run not in the queue changes only with a write to the store
        return {"status": self._answers.get(
            (GetExecutionStatus.commandName, clientId, runId),
            lambda: _STATUS.encoded(self.runs.status(clientId, runId)))}

    @SubscribeRun.responder
    def subscribe(self, request: RequestContext, runId: str, afterSeq: int | None
                  ) -> dict[str, Any]:
        return {"status": self.runs.subscribe(
            request.session.clientId, runId, afterSeq or 0, self.connection)}
