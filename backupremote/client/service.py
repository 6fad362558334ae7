"""
The client daemon as a Twisted service: read this file first.

For now it keeps one authenticated connection to the server; the schedules
and the delivery queue join it here.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig
from backupremote.logfile import withLogFile
from backupremote.protocol.errors import BackupRemoteError


_log = Logger(namespace="backupremote.client")


class ClientDaemon(MultiService):
    """Holds the client library's connection open while running."""

    def __init__(self, client: BackupRemoteClient) -> None:
        super().__init__()
        self.client = client
        client.connection.service.setServiceParent(self)

    def startService(self) -> None:
        super().startService()
        self.connected = Deferred.fromCoroutine(self._connect())

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


def makeService(config: ClientConfig, reactor: Any = None) -> IService:
    """The client daemon, ready to be started or embedded in an application."""
    if reactor is None:
        from twisted.internet import reactor as globalReactor
        reactor = globalReactor
    top = withLogFile(config.logFile)
    daemon = ClientDaemon(BackupRemoteClient.fromConfig(reactor, config))
    daemon.setName("client")
    daemon.setServiceParent(top)
    return top
