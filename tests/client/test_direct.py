"""
L{DirectTLSEndpoint}: TLS straight to an IP address, as C{wrapClientTLS}
over C{HostnameEndpoint} does for one (on a C{MemoryReactorClock}; the
contract suite of C{test_connection.py} runs it against a real server).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection.direct import CONNECT_TIMEOUT, DirectTLSEndpoint, isAddress
from backupremote.tls.client import PinnedCertificateCreator

PIN = ":".join(["AB"] * 32)


class Recorder(Protocol):
    made = False

    def connectionMade(self) -> None:
        self.made = True


class DirectTLSEndpointTests(SynchronousTestCase):
    def connect(self, address: str = "127.0.0.1") -> tuple[MemoryReactorClock, Any, Any]:
        reactor = MemoryReactorClock()
        endpoint = DirectTLSEndpoint(reactor, address, 7443, PinnedCertificateCreator(PIN))
        connected = endpoint.connect(Factory.forProtocol(Recorder))
        return reactor, connected, reactor.tcpClients[0]

    def test_oneConnectionToTheAddressWithTheEndpointsTimeout(self) -> None:
        reactor, connected, (host, port, factory, timeout, bind) = self.connect("::1")
        self.assertEqual((host, port, timeout, bind), ("::1", 7443, CONNECT_TIMEOUT, None))
        self.assertEqual(CONNECT_TIMEOUT, 30)
        self.assertNoResult(connected)

    def test_firesWithTheApplicationProtocolOnceConnected(self) -> None:
        reactor, connected, (_, _, factory, _, _) = self.connect()
        tls = factory.buildProtocol(None)
        self.assertIsInstance(tls, TLSMemoryBIOProtocol)
        tls.makeConnection(StringTransport())
        self.assertNoResult(connected)
        reactor.advance(0)
        protocol = self.successResultOf(connected)
        self.assertIs(protocol, tls.wrappedProtocol)
        self.assertTrue(protocol.made)
        self.assertTrue(tls.transport.value())  # the ClientHello is on its way

    def test_failsWithWhyTheConnectionFailed(self) -> None:
        reactor, connected, (_, _, factory, _, _) = self.connect()
        factory.clientConnectionFailed(reactor.connectors[0], Failure(ConnectionRefusedError()))
        self.failureResultOf(connected, ConnectionRefusedError)

    def test_cancelStopsConnecting(self) -> None:
        reactor, connected, _ = self.connect()
        connector = reactor.connectors[0]
        connected.cancel()
        self.failureResultOf(connected, CancelledError)
        self.assertTrue(connector.stoppedConnecting)

    def test_onlyForAddresses(self) -> None:
        self.assertTrue(isAddress("10.0.0.1"))
        self.assertTrue(isAddress("fe80::1"))
        self.assertFalse(isAddress("backup.example"))
        with self.assertRaises(ValueError):
            DirectTLSEndpoint(MemoryReactorClock(), "localhost", 1, PinnedCertificateCreator(PIN))
