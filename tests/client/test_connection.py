"""
The connection to a server: one contract, kept by the real
L{ConnectionManager} (TLS to a server on 127.0.0.1) and by its in-memory
twin L{backupremote.testing.LoopbackConnection} (iosim to the same
server's core), both on the real reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from backupremote.client.api import BackupRemoteClient
from backupremote.client.connection import ConnectionManager, IServerConnection
from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.runs import GetExecutionStatus
from backupremote.protocol.session import Capabilities
from backupremote.protocol.transfers import CHUNK_SIZE
from tests.client.helpers import ProducingServer, startProducingServer


class ServerConnectionContract:
    """What every L{IServerConnection} does; subclasses say how one is made."""

    timeout = 60
    running: ProducingServer

    def makeConnection(self, secret: str | None = None) -> Any:
        raise NotImplementedError

    async def connected(self, secret: str | None = None) -> Any:
        self.running = await startProducingServer(self)
        connection = self.makeConnection(secret)
        self.addCleanup(connection.stop)
        return connection

    async def test_interface(self) -> None:
        connection = await self.connected()
        self.assertTrue(verifyObject(IServerConnection, connection))

    async def test_authenticatedCalls(self) -> None:
        connection = await self.connected()
        protocol = await connection.connection()
        session = await protocol.whenReady()
        self.assertIn("remote.execute", session["features"])
        answer = await connection.call(Capabilities)
        self.assertIsNotNone(answer["capabilities"].offer)
        self.assertIs(await connection.connection(), protocol)  # one connection, kept

    async def test_errorsCarryTheRegistryCodeAndRequestId(self) -> None:
        connection = await self.connected()
        with self.assertRaises(BackupRemoteError) as caught:
            await connection.call(GetExecutionStatus, runId="no-such-run")
        self.assertEqual(caught.exception.code, errors.NOT_FOUND)
        self.assertTrue(caught.exception.requestId)
        with self.assertRaises(BackupRemoteError) as caught:
            await connection.call(GetExecutionStatus, runId="no-such-run", requestId="mine-1")
        self.assertEqual(caught.exception.requestId, "mine-1")

    async def test_refusedClientStops(self) -> None:
        connection = await self.connected(secret="not-the-secret")
        for _ in range(2):
            with self.assertRaises(BackupRemoteError) as caught:
                await connection.call(Capabilities)
            self.assertEqual(caught.exception.code, errors.AUTH_FAILED)
        self.assertEqual(connection.stopped.code, errors.AUTH_FAILED)

    async def test_newConnectionAfterADrop(self) -> None:
        connection = await self.connected()
        first = await connection.connection()
        first.transport.abortConnection()
        await first.lost
        await deferLater(reactor, 0, lambda: None)  # the connector hears of it after the protocol
        await connection.call(Capabilities)
        self.assertIsNot(await connection.connection(), first)

    async def test_stoppedConnectionRefusesCalls(self) -> None:
        connection = await self.connected()
        await connection.call(Capabilities)
        await connection.stop()
        with self.assertRaises(BackupRemoteError) as caught:
            await connection.call(Capabilities)
        self.assertEqual(caught.exception.code, errors.CONNECTION_FAILED)

    async def test_followAndDownloadThroughTheLibrary(self) -> None:
        connection = await self.connected()
        client = BackupRemoteClient(connection)
        self.running.producer.sizes["r1"] = 3 * CHUNK_SIZE + 5
        await client.executeBackup("r1", self.running.configId)
        events: list[Any] = []
        final = await client.followRun("r1", events.append)
        self.assertEqual(final.state, "completed")
        self.assertEqual(events[-1].kind, "complete")
        # in order, none twice (a live event may overtake the replay of older ones)
        self.assertEqual([e.seq for e in events], sorted({e.seq for e in events}))
        path = await client.download("r1", FilePath(self.mktemp()))
        self.assertEqual(path.getContent(), self.running.producer.data["r1"])
        # a second follow of the finished run replays it to its end
        again: list[Any] = []
        self.assertEqual((await client.followRun("r1", again.append)).state, "completed")
        self.assertEqual([e.seq for e in again], list(range(1, events[-1].seq + 1)))


class ConnectionManagerTests(ServerConnectionContract, TestCase):
    def makeConnection(self, secret: str | None = None) -> ConnectionManager:
        return self.running.server.client(self, secret=secret).connection

    async def test_notStartedByTheLibrary(self) -> None:
        """Only its owner starts the reconnecting service; a call does not."""
        self.running = await startProducingServer(self)
        connection = self.running.server.client(self, start=False).connection
        with self.assertRaises(BackupRemoteError) as caught:
            await connection.call(Capabilities)
        self.assertEqual(caught.exception.code, errors.CONNECTION_FAILED)
        self.assertFalse(connection.service.running)
        connection.service.startService()
        await connection.call(Capabilities)


class LoopbackConnectionTests(ServerConnectionContract, TestCase):
    def makeConnection(self, secret: str | None = None) -> Any:
        return self.running.loopback(reactor, secret)
