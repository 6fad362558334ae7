"""
The client daemon as a Twisted service: read this file first.

    ClientDaemon (MultiService)
      the ClientService of the server connection (it owns and starts it)
      the client's store (client.sqlite3 in [client] data_dir)
      the job runner (backupremote.client.jobs) over both: at start it
        takes up every unfinished job (resumeAll); at stop the jobs wait
        where they are, to be taken up at the next start
      the notifier ([notify] of client.toml): told how each job ends, and
        the licence-expiry watch, told the licence's expiry at login
      the dashboard ([web] listen, backupremote.client.web): pages over
        the store, live progress from the job runner's drives

The schedules and the delivery queue join it here: the scheduler starts
runs with C{daemon.jobs.submit(JobRequest(...))}.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig
from backupremote.client.jobs import JobRunner, daemonRetry, jobRunnerIn, oneServer
from backupremote.client.notify import LICENSE_DAYS, LicenseExpiryWatch, Notifier
from backupremote.client.notify.notifier import ScheduleNames
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.store import IClientStore, SQLiteClientStore
from backupremote.client.web import addDashboard
from backupremote.logfile import withLogFile
from backupremote.protocol.errors import BackupRemoteError

_log = Logger(namespace="backupremote.client")


class ClientDaemon(MultiService):
    """
    Owns the connection to the server, the client's store and its job
    runner (C{store} and C{jobs} may be left out by an embedding
    application that only wants the connection).
    """

    def __init__(self, client: BackupRemoteClient, store: IClientStore | None = None,
                 jobs: JobRunner | None = None, notifier: Notifier | None = None,
                 licenseDays: Sequence[int] = LICENSE_DAYS) -> None:
        super().__init__()
        self.client = client
        self.store = store
        self.jobs = jobs
        client.connection.service.setServiceParent(self)  # type: ignore[attr-defined]
        #: the notifier and the licence watch (C{None} without a notifier)
        self.notifier = notifier
        self.licenseWatch: LicenseExpiryWatch | None = None
        if notifier is not None:
            notifier.setServiceParent(self)
            self.licenseWatch = LicenseExpiryWatch(notifier.clock, notifier.notify,
                                                   licenseDays)
            self.licenseWatch.setServiceParent(self)
        self.connected: Deferred[None] = succeed(None)
        #: fires with the jobs taken up at start once they have ended or stopped
        self.resumed: Deferred[Any] = succeed([])

    def startService(self) -> None:
        super().startService()
        self.connected = Deferred.fromCoroutine(self._connect())
        if self.jobs is not None:
            self.resumed = self.jobs.resumeAll()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.jobs is not None:
            await self.jobs.stop()
        await super().stopService()
        if self.store is not None:
            await self.store.close()

    async def _connect(self) -> None:
        """Say at start whether the server accepts us, and why not."""
        try:
            session = await self.client.session()
        except BackupRemoteError as error:
            _log.error("cannot use the server: {error}. {action}",
                       error=str(error), action=error.action)
            return
        _log.info("connected to the server, which grants: {features}",
                  features=", ".join(session["features"]))
        expiresAt = session.get("licenseExpiresAt")
        if expiresAt and self.licenseWatch is not None:
            self.licenseWatch.observe("default", datetime.fromisoformat(
                expiresAt.replace("Z", "+00:00")))


def makeService(config: ClientConfig, reactor: Any = None) -> IService:
    """The client daemon, ready to be started or embedded in an application."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        reactor = globalReactor
    top = withLogFile(config.logFile)
    client = BackupRemoteClient.fromConfig(reactor, config)
    notifier = config.notify.notifier(reactor)
    store = jobs = None
    if config.dataDir is not None:
        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        notifier.scheduleNames = _scheduleNames(ScheduleStore(store))
        jobs = jobRunnerIn(reactor, config.dataDir, store, oneServer(client),
                           retry=daemonRetry(reactor), notify=notifier.notify)
    daemon = ClientDaemon(client, store, jobs, notifier, config.notify.licenseDays)
    daemon.setName("client")
    daemon.setServiceParent(top)
    if config.webListen is not None and config.dataDir is not None:
        addDashboard(daemon, reactor, config.webListen, config.dataDir)
    return top


def _scheduleNames(schedules: ScheduleStore) -> ScheduleNames:
    """A schedule's name from its id, for the notifier's rules by name."""

    def name(scheduleId: str) -> Deferred[str | None]:
        return schedules.get(scheduleId).addCallback(lambda schedule: schedule.name)

    return name
