"""``twistd backupremote-server``: options and service construction."""

from __future__ import annotations

from twisted.application.service import IService
from twisted.internet.interfaces import IReactorThreads
from twisted.python import usage
from twisted.python.filepath import FilePath

from backupremote.private import usePrivateUmask
from backupremote.protocol.errors import BackupRemoteError
from backupremote.server.config import loadServerConfig
from backupremote.server.edge.hangup import HangupService, reopenAndReload
from backupremote.server.service import makeService as makeServerService


class Options(usage.Options):
    synopsis = "--config DIR/server.toml"
    longdesc = "Serve backupremote over AMP/TLS next to the databases."
    optParameters = [["config", "c", None, "Path of server.toml (required)."]]

    def postOptions(self) -> None:
        if not self["config"]:
            raise usage.UsageError("--config is required")


def makeService(options: Options) -> IService:
    usePrivateUmask()  # every file 0600, every folder 0700
    try:
        service = makeServerService(loadServerConfig(FilePath(options["config"])))
    except BackupRemoteError as e:
        raise SystemExit(f"backupremote-server: {e}\n{e.action}") from None
    from twisted.internet import reactor

    # SIGHUP: reopen the log file, reload the TLS key and certificate
    HangupService(lambda: reopenAndReload(service),
                  IReactorThreads(reactor)).setServiceParent(service)
    return service
