"""Responders for backup runs: execute, cancel, status, subscribe."""

from __future__ import annotations

from typing import Any

from twisted.protocols.amp import CommandLocator

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import CancelBackup, ExecuteBackup, GetExecutionStatus, SubscribeRun
from backupremote.server.edge.session import RequestContext
from backupremote.server.runs.manager import RunManager


class RunResponders(CommandLocator):
    """Runs start only here, on a client's command."""

    def __init__(self, runs: RunManager, connection: Any) -> None:
        self.runs = runs
        self.connection = connection

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
        return {"status": self.runs.status(request.session.clientId, runId)}

    @SubscribeRun.responder
    def subscribe(self, request: RequestContext, runId: str, afterSeq: int | None
                  ) -> dict[str, Any]:
        return {"status": self.runs.subscribe(
            request.session.clientId, runId, afterSeq or 0, self.connection)}
