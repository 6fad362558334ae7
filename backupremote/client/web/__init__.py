"""
The web dashboard of the client daemon (C{[web] listen} in client.toml).

    servers     connected or not, and when each licence expires
    schedules   next fire (in the reader's zone, the schedule's on hover);
                run now, pause, resume
    runs        active runs with live progress by stage; cancel; the history,
                each run with its receipts (server hash -> downloaded ->
                each destination)
    queue       downloads and deliveries in flight, waiting, failed; retry

L{dashboardService} is what the daemon adds: a C{twisted.web} site on an
endpoint string, over a L{DashboardBackend} of the daemon's own parts. The
login token is the file C{web.token} of the client's folder
(L{backupremote.client.web.auth}); live updates are server-sent events from
the job runner's drives (L{backupremote.client.web.events}); the pages are
in L{backupremote.client.web.pages}, the routes, CSRF and headers in
L{backupremote.client.web.resource}, the script and style sheet in
C{static/} (shipped in the package: nothing is fetched from elsewhere).
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.server import Site

from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.web.auth import TOKEN_FILE, Sessions, loadToken
from backupremote.client.web.backend import (
    ClientQueue,
    DashboardBackend,
    IDeliveryQueue,
    QueueItem,
    ServerEntry,
)
from backupremote.client.web.events import LiveEvents
from backupremote.client.web.resource import Dashboard
from backupremote.configfile import configError
from backupremote.reactors import IListeningReactor, IWebReactor

__all__ = [
    "TOKEN_FILE", "ClientQueue", "Dashboard", "DashboardBackend", "DashboardService",
    "IDeliveryQueue", "LiveEvents", "QueueItem", "ServerEntry", "Sessions", "addDashboard",
    "dashboardService", "loadToken",
]

_log = Logger(namespace="backupremote.client.web")


class DashboardService(MultiService):
    """The dashboard's listening site; ends its event streams when it stops."""

    def __init__(self, dashboard: Dashboard, listening: StreamServerEndpointService,
                 listen: str) -> None:
        super().__init__()
        self.dashboard = dashboard
        self.listening = listening
        self._listen = listen
        listening.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        self.listening._waitingForPort.addCallback(self._listening)  # type: ignore[union-attr]

    def _listening(self, port: Any) -> Any:
        address = port.getHost()
        _log.info("dashboard listening on {address} ({listen})",
                  address=f"{address.host}:{address.port}", listen=self._listen)
        return port

    def stopService(self) -> Deferred[None]:
        self.dashboard.closeStreams()
        return super().stopService()


def addDashboard(daemon: Any, reactor: IWebReactor, listen: str,
                 folder: FilePath) -> DashboardService:
    """
    The dashboard of a client daemon (a L{backupremote.client.service.ClientDaemon}),
    on C{listen}, added to it: over its store, its job runner (whose drives
    it watches), its delivery queue, its schedules' starter and its
    servers' connections, with the token C{folder}/web.token.
    """
    store, jobs, queue, starter = daemon.store, daemon.jobs, daemon.queue, daemon.starter
    if store is None or jobs is None or queue is None or starter is None:
        raise configError("[web] listen needs the client's data folder ([client] data_dir)")
    servers = [ServerEntry(name, getattr(client.connection, "address", name), client,
                           getattr(getattr(client.connection, "config", None), "licenseFile",
                                   None)) for name, client in sorted(daemon.clients.items())]
    live = LiveEvents()
    jobs.watchers.append(live.watcher)
    backend = DashboardBackend(reactor, ScheduleStore(store), jobs.jobs, servers, starter,
                               ClientQueue(jobs.jobs, jobs, queue), live)
    service = dashboardService(reactor, listen, backend, Sessions(reactor, loadToken(folder)))
    service.setServiceParent(daemon)
    return service


def dashboardService(reactor: IListeningReactor, listen: str, backend: DashboardBackend,
                     sessions: Sessions) -> DashboardService:
    """The dashboard on the endpoint string C{listen} (C{tcp:8470:interface=127.0.0.1})."""
    dashboard = Dashboard(backend, sessions)
    site = Site(dashboard)
    site.displayTracebacks = False
    site.noisy = False
    listening = StreamServerEndpointService(serverFromString(reactor, listen), site)
    listening._raiseSynchronously = True  # a port in use stops the daemon's start-up
    return DashboardService(dashboard, listening, listen)
