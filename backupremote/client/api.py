"""
The client library: every remote command as a method returning a Deferred.

    client = BackupRemoteClient.fromConfig(reactor, loadClientConfig(path))
    capabilities = await client.capabilities()

Failures are always L{BackupRemoteError} with a registry code, a message
and the request id.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from backupremote.client.config import ClientConfig
from backupremote.client.connection import ConnectionManager
from backupremote.client.credentials import Credentials
from backupremote.protocol.models import Capabilities as CapabilitiesModel
from backupremote.protocol.session import Capabilities


class BackupRemoteClient:
    """Typed remote calls over one L{ConnectionManager}."""

    def __init__(self, connection: ConnectionManager) -> None:
        self.connection = connection

    @classmethod
    def fromConfig(cls, reactor: Any, config: ClientConfig) -> BackupRemoteClient:
        credentials = Credentials(config.clientId, config.readSecret(), config.readLicense())
        return cls(ConnectionManager(reactor, config, credentials))

    def capabilities(self) -> Deferred[CapabilitiesModel]:
        """What the server offers this (authenticated) client."""
        return Deferred.fromCoroutine(self._capabilities())

    async def _capabilities(self) -> CapabilitiesModel:
        answer = await self.connection.call(Capabilities)
        return answer["capabilities"]

    def session(self) -> Deferred[dict[str, Any]]:
        """The ``auth`` answer of the current connection (connecting if need be)."""
        return Deferred.fromCoroutine(self._session())

    async def _session(self) -> dict[str, Any]:
        protocol = await self.connection.connection()
        return await protocol.whenReady()

    def close(self) -> Deferred[None]:
        return self.connection.stop()
