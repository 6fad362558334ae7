"""
TLS straight to an IP address: what C{wrapClientTLS(creator,
HostnameEndpoint(reactor, address, port))} does for an address that needs
no name resolution (one C{connectTCP} with a 30 s timeout, the application
protocol under C{TLSMemoryBIOProtocol}), without importing
C{twisted.internet.endpoints} (and C{twisted.plugin} under it) or asking
the reactor's resolver thread to look up a number: a CLI command's
start-up (L{backupremote.client.connection.oneshot}).
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IConnector,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

#: C{HostnameEndpoint}'s default: seconds to wait for the TCP connection.
CONNECT_TIMEOUT = 30.0


def isAddress(host: str) -> bool:
    """Whether C{host} is an IPv4 or IPv6 address (no name to resolve)."""
    return bool(isIPAddress(host) or isIPv6Address(host))


class _Attempt(ClientFactory):
    """
    One connection attempt: builds the application's protocol and, once it
    is connected (its C{connectionMade} has run, as with an endpoint), fires
    C{connected} with it; fails C{connected} with why the TCP connection
    could not be made.
    """

    noisy = False

    def __init__(self, factory: IProtocolFactory, clock: IReactorTime) -> None:
        self._factory = factory
        self._clock = clock
        self.connected: Deferred[IProtocol] = Deferred(self._cancel)
        self.connector: IConnector | None = None

    def startFactory(self) -> None:
        self._factory.doStart()

    def stopFactory(self) -> None:
        self._factory.doStop()

    def _cancel(self, connected: Deferred[IProtocol]) -> None:
        if self.connector is not None:
            self.connector.stopConnecting()

    def buildProtocol(self, addr: Any) -> Protocol | None:
        protocol = self._factory.buildProtocol(addr)
        if protocol is not None and not self.connected.called:
            # the connector calls makeConnection right after this returns
            self._clock.callLater(0, self._made, protocol)
        return cast("Protocol | None", protocol)

    def _made(self, protocol: IProtocol) -> None:
        if not self.connected.called:
            self.connected.callback(protocol)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        if not self.connected.called:
            self.connected.errback(reason)


@implementer(IStreamClientEndpoint)
class DirectTLSEndpoint:
    """TLS to C{address}:C{port} (an IP address), checked by C{creator}."""

    def __init__(self, reactor: Any, address: str, port: int,
                 creator: IOpenSSLClientConnectionCreator,
                 timeout: float = CONNECT_TIMEOUT) -> None:
        if not isAddress(address):
            raise ValueError(f"not an IP address: {address!r}")
        self._reactor = reactor
        self._address = address
        self._port = port
        self._creator = creator
        self._timeout = timeout

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        attempt = _Attempt(protocolFactory, self._reactor)
        tcp: IReactorTCP = self._reactor
        attempt.connector = tcp.connectTCP(
            self._address, self._port, TLSMemoryBIOFactory(self._creator, True, attempt),
            timeout=self._timeout)
        return attempt.connected
