"""
Both ends of every client-server connection switch Nagle's algorithm off;
the client's socket under the wrappers reads in large blocks (the real
client: tests/integration/test_transfers.py).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.test.iosim import FakeTransport, connect
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection.credentials import Credentials
from backupremote.client.connection.protocol import ClientProtocol
from backupremote.tcptuning import RECEIVE_BLOCK, noDelay, readInBlocks, socketTransport
from tests.fixtures import CLIENT_ID, SECRET, ServerHarness


class RecordingTransport(FakeTransport):
    """An iosim transport that records C{setTcpNoDelay} as a TCP transport would take it."""

    noDelay: bool | None = None

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class RefusingTransport(FakeTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:
        raise OSError("not a TCP socket")


async def _call(protocol: Any, command: Any, **arguments: Any) -> Any:
    return await protocol.callRemote(command, **arguments)


class NoDelayTests(SynchronousTestCase):
    def test_bothEndsSetNoDelayWhenConnected(self) -> None:
        """A control request must not wait for the peer's delayed ACK: both ends set TCP_NODELAY."""
        harness = ServerHarness(self, keepaliveInterval=1e6, authTimeout=1e6)
        server = harness.serverProtocol()
        client = ClientProtocol(harness.clock, Credentials(CLIENT_ID, SECRET, harness.license()),
                                _call, keepaliveInterval=1e6, keepaliveTimeout=1e6)
        serverTransport = RecordingTransport(server, isServer=True)
        clientTransport = RecordingTransport(client, isServer=False)
        connect(server, serverTransport, client, clientTransport, clock=harness.clock)
        self.assertIs(serverTransport.noDelay, True)
        self.assertIs(clientTransport.noDelay, True)
        # and the connection works as before
        self.assertEqual(self.successResultOf(client.whenReady())["apiVersion"], 1)

    def test_transportWithoutTcpIsLeftAlone(self) -> None:
        """A transport without the call, or one that refuses it, is not an error."""
        self.assertIsNone(noDelay(object()))
        self.assertIsNone(noDelay(RefusingTransport(object(), isServer=True)))


class SocketTransportTests(SynchronousTestCase):
    def wrapped(self, depth: int) -> tuple[FileDescriptor, Any]:
        """A socket transport under C{depth} protocol wrappers (as TLS and endpoints stack them)."""
        socket = FileDescriptor()
        top: Any = socket
        for _ in range(depth):
            wrapper = ProtocolWrapper(WrappingFactory(None), Protocol())
            wrapper.makeConnection(top)
            top = wrapper
        return socket, top

    def test_findsTheSocketUnderWrappers(self) -> None:
        for depth in (0, 1, 3):
            socket, top = self.wrapped(depth)
            self.assertIs(socketTransport(top), socket)

    def test_readSizeGoesToTheSocketNotTheWrapper(self) -> None:
        socket, top = self.wrapped(2)
        readInBlocks(top)
        self.assertEqual(socket.bufferSize, RECEIVE_BLOCK)
        self.assertNotIn("bufferSize", vars(top))
        self.assertEqual(FileDescriptor.bufferSize, 2 ** 16)  # the class keeps Twisted's default

    def test_otherTransportsAreLeftAlone(self) -> None:
        transport = RecordingTransport(object(), isServer=True)
        self.assertIsNone(socketTransport(transport))
        self.assertIsNone(socketTransport(object()))
        readInBlocks(transport)
        self.assertNotIn("bufferSize", vars(transport))
