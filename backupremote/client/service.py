"""
The client daemon as a Twisted service: read this file first.

    ClientDaemon (MultiService)
      the ClientService of each server's connection (it owns and starts
        them: one per [servers.NAME] of client.toml), each server checked
        every minute (connected, licence expiry, last error: servers)
      the client's store (client.sqlite3 in [client] data_dir)
      the job runner (backupremote.client.jobs) over both: at start it
        takes up every unfinished job (resumeAll); at stop the jobs wait
        where they are, to be taken up at the next start
      the notifier ([notify] of client.toml): told how each job ends, and
        the licence-expiry watch, told the licence's expiry at every login
        (each connection's ServerWatch, which also tells when a server
        cannot be reached and when it can again)
      the delivery queue ([delivery]): started here, at start (uploads an
        earlier process left are started again), not at the first delivery;
        its breakers tell the notifier, its attempts the metrics
      the dashboard ([web] listen, backupremote.client.web): pages over
        the store, live progress from the job runner's drives, the delivery
        queue's items and retry, "run now" through the scheduler's starter

      the scheduler (backupremote.client.schedules): it starts each due
        slot through a RunnerStarter, which submits a job to the runner
      the job pickup: jobs another process records (``schedule run-now``
        while the daemon runs) are driven here
      the daemon lock (locks/.daemon): one daemon per data folder, and how
        the CLI knows one runs

Every part that tells of an event (the job runner, the scheduler, the
queue, the connections, the licence watch) is given one notify callable:
the notifier's, and with [metrics] listen also the metrics' (event()).

A schedule's destination names become what its job delivers to in
L{backupremote.client.schedules.starter.destinationsFor}: the client's
named destinations (C{backupremote dest add}) unless the embedding
application passes its own C{destinations} lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig
from backupremote.client.connection import ServerConnection
from backupremote.client.connection.watch import ServerWatch
from backupremote.client.delivery import licensesOf, queueDeliveryIn
from backupremote.client.delivery.queue import DeliveryQueue
from backupremote.client.expiry import describeExpiry, expiryJSON, expiryOf
from backupremote.client.jobs import JobRunner, daemonRetry, jobRunnerIn, now
from backupremote.client.jobs.locks import DaemonLock, JobLocks
from backupremote.client.jobs.pickup import JobPickup
from backupremote.client.notify import LICENSE_DAYS, LicenseExpiryWatch, Notifier
from backupremote.client.notify.notifier import EventSink, ScheduleNames
from backupremote.client.schedules.scheduler import JobStarter, Scheduler
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.schedules.starter import DestinationNames, RunnerStarter
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.servers import CHECK_INTERVAL, ClientServers
from backupremote.client.store import IClientStore, SQLiteClientStore
from backupremote.client.web import addDashboard
from backupremote.logfile import withLogFile
from backupremote.metrics import addClientMetrics
from backupremote.protocol.errors import BackupRemoteError
from backupremote.reactors import IClientReactor

_log = Logger(namespace="backupremote.client")


class ClientDaemon(MultiService):
    """
    Owns the connection to the server, the client's store and its job
    runner (C{store} and C{jobs} may be left out by an embedding
    application that only wants the connection).
    """

    def __init__(self, client: BackupRemoteClient, store: IClientStore | None = None,
                 jobs: JobRunner | None = None, notifier: Notifier | None = None,
                 licenseDays: Sequence[int] = LICENSE_DAYS,
                 servers: ClientServers | None = None, scheduler: Scheduler | None = None,
                 pickup: JobPickup | None = None, lock: DaemonLock | None = None,
                 queue: DeliveryQueue | None = None, starter: JobStarter | None = None,
                 notify: EventSink | None = None) -> None:
        super().__init__()
        self.client = client
        self.store = store
        self.jobs = jobs
        #: every server's client by name (C{client} alone is C{default})
        self.servers = servers
        self.clients = servers.all() if servers is not None else {"default": client}
        self.scheduler = scheduler
        self.pickup = pickup
        self.lock = lock
        #: the delivery queue (the job runner's deliver step), started here
        self.queue = queue
        #: how a schedule's run is started (the scheduler's; the dashboard's "run now")
        self.starter = starter
        for each in self.clients.values():
            each.connection.service.setServiceParent(self)  # type: ignore[attr-defined]
        self._checks: LoopingCall | None = None
        #: the notifier and the licence watch (C{None} without a notifier)
        self.notifier = notifier
        self.licenseWatch: LicenseExpiryWatch | None = None
        #: what the daemon's parts tell: the notifier (and the metrics)
        self.notify = notify or (notifier.notify if notifier is not None else None)
        if notifier is not None:
            notifier.setServiceParent(self)
            self.licenseWatch = LicenseExpiryWatch(notifier.clock, self.notify or notifier.notify,
                                                   licenseDays)
            self.licenseWatch.setServiceParent(self)
            for name, each in self.clients.items():
                if isinstance(each.connection, ServerConnection):
                    each.connection.watch = ServerWatch(notifier.clock, name, self.notify,
                                                        self.licenseWatch)
        self.connected: Deferred[None] = succeed(None)
        #: fires with the jobs taken up at start once they have ended or stopped
        self.resumed: Deferred[Any] = succeed([])

    def startService(self) -> None:
        if self.lock is not None:
            self.lock.acquire()  # CONFLICT: another daemon has this data folder
        super().startService()
        self.connected = Deferred.fromCoroutine(self._connect())
        if self.queue is not None:
            # before the jobs: their deliveries wait for it
            self.queue.start().addErrback(
                lambda failure: _log.failure("the delivery queue could not start", failure))
        if self.jobs is not None:
            self.resumed = self.jobs.resumeAll()
        if self.servers is not None:
            self._checks = LoopingCall(self._recheck)
            self._checks.clock = self.servers.reactor
            self._checks.start(CHECK_INTERVAL, now=False)
        for service in (self.scheduler, self.pickup):
            if service is not None:
                service.startService()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._checks is not None and self._checks.running:
            self._checks.stop()
        for service in (self.pickup, self.scheduler):
            if service is not None and service.running:
                await maybeDeferred(service.stopService)
        if self.jobs is not None:
            await self.jobs.stop()
        if self.queue is not None:
            await self.queue.stop()
        await super().stopService()
        if self.store is not None:
            await self.store.close()
        if self.lock is not None:
            self.lock.release()

    def _recheck(self) -> Deferred[Any]:
        """Check every server again (quietly: the connections log their own troubles)."""
        assert self.servers is not None
        return self.servers.checkAll().addCallback(self._observeLicenses)

    def _observeLicenses(self, statuses: Any) -> None:
        if self.licenseWatch is None:
            return
        for status in statuses:
            if status.licenseExpiresAt is not None:
                self.licenseWatch.observe(status.name, status.licenseExpiresAt)

    async def _connect(self) -> None:
        """Say at start whether each server accepts us, and why not."""
        if self.servers is not None:
            for status in await self.servers.checkAll():
                if status.lastError is not None:
                    _log.error("cannot use server {server} ({address}): {error}. {action}",
                               server=status.name, address=status.address,
                               error=str(status.lastError), action=status.lastError.action)
                else:
                    _log.info("connected to server {server} ({address}), which grants: "
                              "{features}; licence {licenseExpiry}", server=status.name,
                              address=status.address, features=", ".join(status.features),
                              licenseExpiry=describeExpiry(status.licenseExpiresAt,
                                                           now(self.servers.reactor)()),
                              licenseExpiresAt=expiryJSON(status.licenseExpiresAt, now(
                                  self.servers.reactor)())["licenseExpiresAt"])
            self._observeLicenses(self.servers.status(name) for name in self.servers.names)
            return
        try:
            session = await self.client.session()
        except BackupRemoteError as error:
            _log.error("cannot use the server: {error}. {action}",
                       error=str(error), action=error.action)
            return
        expiresAt = expiryOf(session)
        _log.info("connected to the server, which grants: {features}; licence "
                  "{licenseExpiry}", features=", ".join(session["features"]),
                  licenseExpiry=describeExpiry(expiresAt, now(self.client.connection.reactor)()),
                  licenseExpiresAt=session.get("licenseExpiresAt"))
        if expiresAt and self.licenseWatch is not None:
            self.licenseWatch.observe("default", expiresAt)


def makeService(config: ClientConfig, reactor: IClientReactor | None = None,
                destinations: DestinationNames | None = None) -> IService:
    """
    The client daemon, ready to be started or embedded in an application.

    @param destinations: a schedule's destination names -> what its runs
        are delivered to (default: the client's named destinations).
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        # the global reactor provides every interface a client uses
        reactor = cast(IClientReactor, globalReactor)
    top = withLogFile(config.logFile, defaults={"clientId": config.clientId})
    servers = ClientServers(reactor, config)
    client = servers("default" if "default" in servers.names else servers.names[0])
    notifier = config.notify.notifier(reactor)
    metrics = addClientMetrics(top, reactor, config, None, servers)
    notify = notifier.notify if metrics is None else tellBoth(notifier.notify, metrics.event)
    store = jobs = scheduler = pickup = lock = queue = starter = schedules = None
    if config.dataDir is not None:
        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        schedules = ScheduleStore(store)
        notifier.scheduleNames = _scheduleNames(schedules)
        delivery: Any = queueDeliveryIn(reactor, config.dataDir, store,
                                   licensesOf(config, now(reactor)), config.delivery,
                                   metrics=metrics, notify=notify)
        queue = delivery.queue
        jobs = jobRunnerIn(reactor, config.dataDir, store, servers,
                           retry=daemonRetry(reactor), notify=notify, delivery=delivery)
        if metrics is not None:
            watchJob: Any = metrics.watchJob  # a JobObserver factory
            jobs.watchers.append(watchJob)
            metrics.sampleQueue(queue.depths)
        if destinations is None:
            destinations = DestinationRegistry.inFolder(
                reactor, store, config.dataDir).references
        starter = RunnerStarter(jobs, destinations)
        scheduler = Scheduler(schedules, starter, reactor, notify=notify, nextFires=metrics)
        pickup = JobPickup(jobs, reactor, JobLocks(config.dataDir.child("locks")))
        lock = DaemonLock(config.dataDir.child("locks"))
    daemon = ClientDaemon(client, store, jobs, notifier, config.notify.licenseDays,
                          servers=servers, scheduler=scheduler, pickup=pickup, lock=lock,
                          queue=queue, starter=starter, notify=notify)
    daemon.setName("client")
    daemon.setServiceParent(top)
    if metrics is not None and schedules is not None:
        # after the daemon: it stops first, before the daemon closes the store
        followRejections(top, reactor, schedules, metrics)
    if config.webListen is not None and config.dataDir is not None:
        addDashboard(daemon, reactor, config.webListen, config.dataDir)
    return top


def tellBoth(*sinks: EventSink) -> EventSink:
    """One notify callable that tells each of C{sinks} (the notifier, the metrics)."""

    def tell(event: Any) -> None:
        for sink in sinks:
            sink(event)

    return tell


#: Seconds between two looks at the schedule refusals the CLI counted in the store.
REJECTIONS_INTERVAL = 30.0


def followRejections(top: Any, reactor: IReactorTime, schedules: ScheduleStore,
                     metrics: Any) -> None:
    """
    Carry the schedule refusals the CLI counts in the store into the
    daemon's metrics, every L{REJECTIONS_INTERVAL} seconds (a failed look
    is tried again at the next).
    """
    def look() -> Any:
        return schedules.rejections().addCallbacks(
            metrics.rejectionsSeen,
            lambda failure: _log.failure("reading the schedule refusals", failure))

    following = TimerService(REJECTIONS_INTERVAL, look)  # type: ignore[no-untyped-call]
    following.clock = reactor
    following.setName("schedule-rejections")  # type: ignore[no-untyped-call]
    following.setServiceParent(top)  # type: ignore[no-untyped-call]


def _scheduleNames(schedules: ScheduleStore) -> ScheduleNames:
    """A schedule's name from its id, for the notifier's rules by name."""

    def name(scheduleId: str) -> Deferred[str | None]:
        return schedules.get(scheduleId).addCallback(lambda schedule: schedule.name)

    return name
