"""
The servers of a client: one library client (one reconnecting connection)
per C{[servers.NAME]} of C{client.toml}, and what is known of each.

    servers = ClientServers(reactor, config)        # nothing connects yet
    client = servers("db-east")                     # its client, made on first use
    runner = JobRunner(..., servers, ...)           # a job names its server
    status = await servers.check("db-east")         # connected? licence? last error?

The daemon (L{backupremote.client.service}) owns every server's
C{ClientService} and checks each one every L{CHECK_INTERVAL} seconds; a CLI
command owns only the connections it uses (C{ownConnections=True} starts
each one as it is made), and closes them all at its end.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime

from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import ClientConfig
from backupremote.client.expiry import expiryJSON
from backupremote.protocol.errors import INTERNAL_ERROR, BackupRemoteError
from backupremote.reactors import ITransferReactor

UTC = timezone.utc
#: Seconds between two checks of each server by the daemon.
CHECK_INTERVAL = 60.0


@define
class ServerStatus:
    """What this client knows of one of its servers, as of C{checkedAt}."""

    name: str
    address: str
    clientId: str
    #: whether the last check found an authenticated connection
    connected: bool = False
    checkedAt: datetime | None = None
    #: the licence's expiry, as the server read it at the last login
    licenseExpiresAt: datetime | None = None
    features: tuple[str, ...] = ()
    serverVersion: str | None = None
    #: why the last check failed (C{None} once one succeeds)
    lastError: BackupRemoteError | None = None
    lastErrorAt: datetime | None = None

    def asJSON(self, now: datetime) -> dict[str, Any]:
        error = self.lastError
        return {
            "name": self.name, "address": self.address, "clientId": self.clientId,
            "connected": self.connected, "checkedAt": _iso(self.checkedAt),
            **expiryJSON(self.licenseExpiresAt, now), "features": list(self.features),
            "serverVersion": self.serverVersion,
            "lastError": None if error is None else {
                "errorCode": error.code, "errorMessage": error.message,
                "action": error.action, "at": _iso(self.lastErrorAt)},
        }


@define
class ClientServers:
    """
    The library client of each server of C{config}, by name: the
    C{Servers} callable a L{backupremote.client.jobs.JobRunner} takes.

    @ivar ownConnections: start each client's connection as it is made (a
        CLI command's one shot); the daemon leaves it to its services.
    """

    reactor: ITransferReactor
    config: ClientConfig
    ownConnections: bool = False
    _clients: dict[str, BackupRemoteClient] = field(factory=dict)
    _status: dict[str, ServerStatus] = field(factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return self.config.serverNames

    def __call__(self, name: str) -> BackupRemoteClient:
        """The client of server C{name} (C{CONFIG_INVALID} naming the servers if none)."""
        client = self._clients.get(name)
        if client is None:
            client = BackupRemoteClient.fromConfig(self.reactor, self.config.forServer(name))
            self._clients[name] = client
            if self.ownConnections:
                client.connection.service.startService()  # type: ignore[attr-defined]
        return client

    def all(self) -> dict[str, BackupRemoteClient]:
        """Every server's client (made now if need be), by name."""
        return {name: self(name) for name in self.names}

    def status(self, name: str) -> ServerStatus:
        """What is known of server C{name} (nothing checked yet: not connected)."""
        status = self._status.get(name)
        if status is None:
            entry = self.config.serverEntries[self.config.pickServer(name)]
            status = self._status[name] = ServerStatus(name, str(entry.address), entry.clientId)
        return status

    def check(self, name: str) -> Deferred[ServerStatus]:
        """Log in to server C{name} (or wait for its connection) and record what it says."""
        return Deferred.fromCoroutine(self._check(name))

    def checkAll(self, names: Iterable[str] | None = None) -> Deferred[list[ServerStatus]]:
        """L{check} these servers (all by default) side by side."""
        checks = [self.check(name) for name in (self.names if names is None else names)]
        return DeferredList(checks, consumeErrors=True).addCallback(
            lambda results: [status for _, status in results])

    async def _check(self, name: str) -> ServerStatus:
        status = self.status(name)
        now = _now(self.reactor)
        try:
            session = await self(name).session()
        except BackupRemoteError as error:
            status.connected, status.lastError, status.lastErrorAt = False, error, now
        except Exception as error:
            status.connected, status.lastErrorAt = False, now
            status.lastError = BackupRemoteError(INTERNAL_ERROR, f"unexpected: {error!r}")
        else:
            status.connected, status.lastError, status.lastErrorAt = True, None, None
            status.features = tuple(session.get("features") or ())
            status.serverVersion = session.get("serverVersion")
            expires = session.get("licenseExpiresAt")
            status.licenseExpiresAt = datetime.fromisoformat(
                expires.replace("Z", "+00:00")) if expires else None
        status.checkedAt = now
        return status

    def close(self) -> Deferred[Any]:
        """Close every connection made (a CLI command's end)."""
        return DeferredList([client.close() for client in self._clients.values()],
                            consumeErrors=True)


def _now(clock: IReactorTime) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), UTC)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None
