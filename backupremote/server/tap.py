"""``twistd backupremote-server``: options and service construction."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorThreads

from backupremote.daemon import DaemonOptions, serviceFromConfig
from backupremote.server.config import loadServerConfig
from backupremote.server.edge.hangup import HangupService, reopenAndReload
from backupremote.server.machinery.timeslice import ReactorSlice
from backupremote.server.service import makeService as makeServerService


class Options(DaemonOptions):
    synopsis = "--config DIR/server.toml"
    longdesc = "Serve backupremote over AMP/TLS next to the databases."
    optParameters = [["config", "c", None, "Path of server.toml (required)."]]


def makeService(options: Options) -> IService:
    service = serviceFromConfig("backupremote-server", options["config"], loadServerConfig,
                                makeServerService)
    from twisted.internet import reactor

    # SIGHUP: reopen the log file, reload the TLS key and certificate
    HangupService(lambda: reopenAndReload(service),
                  IReactorThreads(reactor)).setServiceParent(service)
    # the reactor thread (twistd starts the services on it) runs with a short
    # CPU time slice: its answers wait less for a core on a busy machine
    ReactorSlice().setServiceParent(service)  # type: ignore[no-untyped-call]
    return service
