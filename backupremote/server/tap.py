"""``twistd backupremote-server``: options and service construction."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorThreads

from backupremote.daemon import DaemonOptions, serviceFromConfig
from backupremote.server.config import ServerConfig, loadServerConfig
from backupremote.server.edge.hangup import HangupService, reopenAndReload
from backupremote.server.machinery.timeslice import ReactorSlice
from backupremote.server.service import makeService as makeServerService


class Options(DaemonOptions):
    synopsis = "--config DIR/server.toml"
    longdesc = "Serve backupremote over AMP/TLS next to the databases."
    optParameters = [["config", "c", None, "Path of server.toml (required)."]]


def _daemonService(config: ServerConfig) -> IService:
    service = makeServerService(config)
    # the reactor thread (twistd starts the services on it) runs with a short
    # CPU time slice: its answers wait less for a core on a busy machine. The
    # daemon's only: an application embedding the server keeps its scheduling.
    ReactorSlice(config.reactorTimeSliceUs * 1000).setServiceParent(  # type: ignore[no-untyped-call]
        service)
    return service


def makeService(options: Options) -> IService:
    service = serviceFromConfig("backupremote-server", options["config"], loadServerConfig,
                                _daemonService)
    from twisted.internet import reactor

    # SIGHUP: reopen the log file, reload the TLS key and certificate
    HangupService(lambda: reopenAndReload(service),
                  IReactorThreads(reactor)).setServiceParent(service)
    return service
