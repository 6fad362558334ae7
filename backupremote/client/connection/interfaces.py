"""The client's one Interface to a server: L{IServerConnection}."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from zope.interface import Attribute, Interface


class IServerConnection(Interface):
    """
    One authenticated, self-healing connection to one server: what the
    client library (L{backupremote.client.api.BackupRemoteClient}), the
    download and the jobs use, whatever carries the bytes.

    L{backupremote.client.connection.ConnectionManager} is the real one
    (TLS, reconnecting through a C{ClientService} its owner starts);
    L{backupremote.testing.LoopbackConnection} is the in-memory twin.
    C{tests/client/test_connection.py} holds the contract both keep.
    """

    reactor: IReactorTime = Attribute("The reactor (or C{Clock}) the connection's timers use.")
    followers: Any = Attribute(
        "The L{backupremote.client.connection.followers.RunFollowers} fed by pushed "
        "run events; every run followed is subscribed again, from the last event "
        "seen, on each new connection.")
    transfers: Any = Attribute(
        "The L{backupremote.client.connection.receivers.TransferReceivers} that "
        "pushed file chunks are routed to.")
    stopped: Any = Attribute(
        "The L{BackupRemoteError} that stopped the connection for good (the server "
        "refused this client: wrong secret, licence, API version), or C{None}.")

    def connection() -> Awaitable[Any]:
        """
        The current authenticated connection (a
        L{backupremote.client.connection.protocol.ClientProtocol}), waiting
        for one if need be; fails with a L{BackupRemoteError}
        (C{CONNECTION_FAILED}, C{TIMEOUT}, C{AUTH_FAILED}, C{TLS_*}...).
        """

    def call(command: Any, **arguments: Any) -> Awaitable[dict[str, Any]]:
        """
        Send C{command} (with a fresh C{requestId} unless one is given) on
        the current connection; the answer, or a L{BackupRemoteError} with
        the server's registry code, message and request id.
        """

    def callOn(protocol: Any, command: Any, **arguments: Any) -> Awaitable[dict[str, Any]]:
        """L{call} on that connection (a file transfer lives on one)."""

    def stop() -> Deferred[None]:
        """Close the connection; later calls fail with C{CONNECTION_FAILED}."""
