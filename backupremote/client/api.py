"""
The client library: every remote command as a method returning a Deferred.

    client = BackupRemoteClient.fromConfig(reactor, loadClientConfig(path))
    client.connection.service.startService()   # its owner keeps it connected
    capabilities = await client.capabilities()

Failures are always L{BackupRemoteError} with a registry code, a message
and the request id.
"""

from __future__ import annotations

from typing import Any

from twisted.python.filepath import FilePath

from twisted.internet.defer import Deferred

from backupremote.client.config import ClientConfig
from backupremote.client.connection import ConnectionManager, Credentials, IServerConnection
from backupremote.client.connection.followers import EventHandler
from backupremote.client.connection.oneshot import OneShotConnection
from backupremote.client.download import ProgressHandler, downloadRun
from backupremote.protocol.databases import (
    ConnectionTestResult,
    CreateDatabaseConfig,
    DatabaseConfig,
    DatabaseConfigInput,
    DatabaseConfigPage,
    DeleteDatabaseConfig,
    GetDatabaseConfigById,
    ListDatabaseConfigs,
    PreflightReport,
    TestDatabaseConnection,
    UpdateDatabaseConfig,
    ValidateServerBackupPrerequisites,
)
from backupremote.protocol.errors import NOT_FOUND, BackupRemoteError
from backupremote.protocol.metrics import GetMetrics, ServerMetrics
from backupremote.protocol.models import Capabilities as CapabilitiesModel
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import (
    CancelBackup,
    ExecuteBackup,
    GetExecutionStatus,
    RunStatus,
    SubscribeRun,
)
from backupremote.protocol.session import Capabilities
from backupremote.protocol.transfers import FileChunkHashes, ListFiles, Manifest, ReleaseArtifact
from backupremote.reactors import ITransferReactor


#: What to do about a run the server does not know (or that is another client's).
RUN_NOT_FOUND_HINT = ("List the runs this client drove (`backupremote runs list`) and use a "
                      "current runId; a run another client started is not yours to see.")


def runNotFound(error: BackupRemoteError) -> BackupRemoteError:
    """C{error}, with the action for a run when it is C{NOT_FOUND}."""
    if error.code != NOT_FOUND or error.hint is not None:
        return error
    return BackupRemoteError(error.code, error.message, error.requestId, error.details,
                             hint=RUN_NOT_FOUND_HINT)


def _credentials(config: ClientConfig) -> Credentials:
    """What the client of C{config}'s server logs in with (its secret and licence, read now)."""
    return Credentials(config.clientId, config.readSecret(), config.readLicense())


class BackupRemoteClient:
    """Typed remote calls over one L{IServerConnection}."""

    def __init__(self, connection: IServerConnection) -> None:
        self.connection = connection

    @classmethod
    def fromConfig(cls, reactor: ITransferReactor, config: ClientConfig) -> BackupRemoteClient:
        """
        A client of the server C{config} names. Its L{ConnectionManager}'s
        C{service} is not started: the caller owns it (see
        L{backupremote.client.connection.manager}).
        """
        return cls(ConnectionManager(reactor, config, _credentials(config)))

    @classmethod
    def forOneCommand(cls, reactor: ITransferReactor, config: ClientConfig
                      ) -> BackupRemoteClient:
        """
        A client of the server C{config} names for one short command: it
        connects at its first call (no reconnecting service to start) and
        L{close} ends it (L{backupremote.client.connection.oneshot}).
        """
        return cls(OneShotConnection(reactor, config, _credentials(config)))

    def _ask(self, command: Any, key: str, **arguments: Any) -> Deferred[Any]:
        """Send C{command}; fire with the answer's C{key}."""

        async def ask() -> Any:
            return (await self.connection.call(command, **arguments))[key]

        return Deferred.fromCoroutine(ask())

    def _askRun(self, command: Any, key: str, **arguments: Any) -> Deferred[Any]:
        """L{_ask} about a run: C{NOT_FOUND} points at this client's run history."""

        async def ask() -> Any:
            try:
                return (await self.connection.call(command, **arguments))[key]
            except BackupRemoteError as error:
                raise runNotFound(error) from None

        return Deferred.fromCoroutine(ask())

    def capabilities(self) -> Deferred[CapabilitiesModel]:
        """What the server offers this (authenticated) client."""
        return self._ask(Capabilities, "capabilities")

    # Database configurations

    def createDatabaseConfig(self, config: DatabaseConfigInput) -> Deferred[DatabaseConfig]:
        """Store a configuration on the server; fires with it (and its new id)."""
        return self._ask(CreateDatabaseConfig, "config", config=config)

    def updateDatabaseConfig(self, configId: str, version: int,
                             config: DatabaseConfigInput) -> Deferred[DatabaseConfig]:
        """Replace a configuration read at C{version} (else C{CONFLICT})."""
        return self._ask(UpdateDatabaseConfig, "config", id=configId, version=version,
                         config=config)

    def deleteDatabaseConfig(self, configId: str, version: int | None = None) -> Deferred[str]:
        return self._ask(DeleteDatabaseConfig, "id", id=configId, version=version)

    def listDatabaseConfigs(self, offset: int = 0, limit: int = 100
                            ) -> Deferred[DatabaseConfigPage]:
        return self._ask(ListDatabaseConfigs, "page", offset=offset, limit=limit)

    def allDatabaseConfigs(self) -> Deferred[list[DatabaseConfig]]:
        """Every configuration, page after page."""

        async def collect() -> list[DatabaseConfig]:
            items: list[DatabaseConfig] = []
            while True:
                page = await self.listDatabaseConfigs(offset=len(items))
                items += page.items
                if not page.items or len(items) >= page.total:
                    return items

        return Deferred.fromCoroutine(collect())

    def getDatabaseConfig(self, configId: str) -> Deferred[DatabaseConfig]:
        return self._ask(GetDatabaseConfigById, "config", id=configId)

    def testDatabaseConnection(self, configId: str | None = None,
                               config: DatabaseConfigInput | None = None
                               ) -> Deferred[ConnectionTestResult]:
        """Test a stored configuration by id, or an unsaved one, from the server."""
        return self._ask(TestDatabaseConnection, "result", id=configId, config=config)

    def preflight(self, configId: str, options: BackupOptions | None = None
                  ) -> Deferred[PreflightReport]:
        """Blockers and warnings for a backup of C{configId} with C{options}."""
        return self._ask(ValidateServerBackupPrerequisites, "report", id=configId,
                         options=options)

    # Runs

    def executeBackup(self, runId: str, databaseConfigId: str,
                      options: BackupOptions | None = None,
                      scheduleId: str | None = None) -> Deferred[RunStatus]:
        """
        Command a backup. The same C{runId} always means the same run: a
        retry returns it (C{duplicate}) instead of starting another.
        """
        return self._ask(ExecuteBackup, "status", runId=runId,
                         databaseConfigId=databaseConfigId, options=options,
                         scheduleId=scheduleId)

    def cancelBackup(self, runId: str) -> Deferred[RunStatus]:
        return self._askRun(CancelBackup, "status", runId=runId)

    def getExecutionStatus(self, runId: str) -> Deferred[RunStatus]:
        return self._askRun(GetExecutionStatus, "status", runId=runId)

    def getMetrics(self) -> Deferred[ServerMetrics]:
        """The server's counters, timings and current load (server-wide aggregates)."""
        return self._ask(GetMetrics, "metrics")

    def followRun(self, runId: str, onEvent: EventHandler | None = None
                  ) -> Deferred[RunStatus]:
        """
        Call C{onEvent} with each event of the run (replayed from its start,
        and across reconnections), and fire with its final status.
        """

        async def follow() -> RunStatus:
            follower = self.connection.followers.follow(runId, onEvent)
            try:
                await self.connection.call(SubscribeRun, runId=runId,
                                           afterSeq=follower.lastSeq)
            except BaseException as error:
                self.connection.followers.unfollow(runId)
                if isinstance(error, BackupRemoteError):
                    raise runNotFound(error) from None
                raise
            self.connection.followers.caughtUp(runId)
            await follower.ended
            return await self.getExecutionStatus(runId)

        return Deferred.fromCoroutine(follow())

    # Artifacts

    def listFiles(self, runId: str) -> Deferred[Manifest]:
        """The manifest of a finished run's staged artifact."""
        return self._askRun(ListFiles, "manifest", runId=runId)

    def fileChunkHashes(self, fileId: str, start: int = 0) -> Deferred[bytes]:
        """Raw SHA-256 digests (32 bytes each) of chunks C{start}.. (up to 2,000)."""
        return self._ask(FileChunkHashes, "hashes", fileId=fileId, start=start)

    def download(self, runId: str, directory: FilePath,
                 onProgress: ProgressHandler | None = None,
                 **options: Any) -> Deferred[FilePath]:
        """
        Fetch the run's artifact into C{directory} and fire with its path:
        verified chunk by chunk and whole, renamed into place only then,
        resumed after a dropped connection or an earlier interrupted call.
        The staging stays on the server (see L{releaseArtifact}).
        """
        return Deferred.fromCoroutine(downloadRun(
            self.connection, self.connection.reactor, runId, directory, onProgress, **options))

    def releaseArtifact(self, runId: str) -> Deferred[bool]:
        """Let the server delete the run's staging (C{False}: nothing was left)."""
        return self._askRun(ReleaseArtifact, "released", runId=runId)

    def session(self) -> Deferred[dict[str, Any]]:
        """The ``auth`` answer of the current connection (connecting if need be)."""
        return Deferred.fromCoroutine(self._session())

    async def _session(self) -> dict[str, Any]:
        protocol = await self.connection.connection()
        return await protocol.whenReady()

    def close(self) -> Deferred[None]:
        return self.connection.stop()
