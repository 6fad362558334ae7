"""Responders for database configurations, connection tests and preflight."""

from __future__ import annotations

from typing import Any, cast

from twisted.protocols.amp import CommandLocator

from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    DeleteDatabaseConfig,
    GetDatabaseConfigById,
    ListDatabaseConfigs,
    TestDatabaseConnection,
    UpdateDatabaseConfig,
    ValidateServerBackupPrerequisites,
)
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import Structured
from backupremote.server.databases.service import DatabaseConfigs
from backupremote.server.edge.session import RequestContext
from backupremote.server.state.changes import StampedCache
from backupremote.server.state.store import ServerStore

#: How a page of configurations travels, to encode it once per change.
_PAGE = cast(Structured, dict(ListDatabaseConfigs.response)[b"page"])


class DatabaseResponders(CommandLocator):
    """
    Configurations live on the server; clients manage them by id, each its
    own (an admin: all of them; see L{backupremote.server.state.ownership}).
    """

    def __init__(self, databases: DatabaseConfigs, audit: ServerStore,
                 answers: StampedCache[Any]) -> None:
        self.databases = databases
        self._audit = audit
        self._answers = answers

    @CreateDatabaseConfig.responder
    def create(self, request: RequestContext, config: DatabaseConfigInput) -> dict[str, Any]:
        created = self.databases.create(request.session.clientId, config)
        request.log.info("created database config {configId} ({engine})",
                         configId=created.id, engine=created.engine)
        self._audit.audit(f"db.create {created.id}", "ok", request.session.clientId,
                        request.session.peer, request.requestId)
        return {"config": created}

    @UpdateDatabaseConfig.responder
    def update(self, request: RequestContext, id: str, version: int,
               config: DatabaseConfigInput) -> dict[str, Any]:
        updated = self.databases.update(request.session.clientId, id, version, config)
        request.log.info("updated database config {configId} to version {version}",
                         configId=id, version=updated.version)
        self._audit.audit(f"db.update {id}", "ok", request.session.clientId,
                        request.session.peer, request.requestId)
        return {"config": updated}

    @DeleteDatabaseConfig.responder
    def delete(self, request: RequestContext, id: str, version: int | None) -> dict[str, Any]:
        self.databases.delete(request.session.clientId, id, version)
        request.log.info("deleted database config {configId}", configId=id)
        self._audit.audit(f"db.delete {id}", "ok", request.session.clientId,
                        request.session.peer, request.requestId)
        return {"id": id}

    @ListDatabaseConfigs.responder
    def list(self, request: RequestContext, offset: int | None, limit: int | None
             ) -> dict[str, Any]:
        clientId = request.session.clientId
        assert clientId is not None  # the gate lets only sessions that authenticated here
        # read and encoded once per change of the store, whoever asks how often
        return {"page": self._answers.get(
            (ListDatabaseConfigs.commandName, clientId, offset, limit),
            lambda: _PAGE.encoded(self.databases.page(clientId, offset, limit)))}

    @GetDatabaseConfigById.responder
    def get(self, request: RequestContext, id: str) -> dict[str, Any]:
        return {"config": self.databases.get(request.session.clientId, id)}

    @TestDatabaseConnection.responder
    async def test(self, request: RequestContext, id: str | None,
                   config: DatabaseConfigInput | None) -> dict[str, Any]:
        result = await self.databases.test(request.session.clientId, id, config)
        request.log.info("connection test of {target}: {outcome}",
                         target=id or "an unsaved config",
                         outcome="ok" if result.ok else result.reason)
        return {"result": result}

    @ValidateServerBackupPrerequisites.responder
    async def preflight(self, request: RequestContext, id: str,
                        options: BackupOptions | None) -> dict[str, Any]:
        self.databases.owned(request.session.clientId, id)
        report = await self.databases.preflight(id, options)
        request.log.info("preflight of {configId}: {blockers} blocker(s), {warnings} warning(s)",
                         configId=id, blockers=len(report.blockers),
                         warnings=len(report.warnings))
        return {"report": report}
