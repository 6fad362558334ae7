"""
The connection to a server: one contract, kept by the real
L{ConnectionManager} (TLS to a server on 127.0.0.1, reconnecting), by the
CLI's L{OneShotConnection} (the same TLS, connected when first used) and by
their in-memory twin L{backupremote.testing.LoopbackConnection} (iosim to
the same server's core), all on the real reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.task import Clock, deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from backupremote.client.api import BackupRemoteClient
from backupremote.client.connection import ConnectionManager, Credentials, IServerConnection
from backupremote.client.connection.direct import DirectTLSEndpoint
from backupremote.client.connection.manager import retryDelay
from backupremote.client.connection.oneshot import OneShotConnection
from backupremote.client.config import ClientConfig, ServerAddress
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

    async def test_anAddressStraightANameResolved(self) -> None:
        """
        The daemon's connection, as the one-shot one: to an IP address
        straight (L{DirectTLSEndpoint}), to a name through the reactor's
        resolver; both reach the server.
        """
        self.running = await startProducingServer(self)
        server = self.running.server
        byAddress = server.client(self).connection
        byName = server.client(self, server=ServerAddress("localhost", server.port)).connection
        self.assertIsInstance(byAddress.endpoint._endpoint, DirectTLSEndpoint)
        self.assertNotIsInstance(byName.endpoint._endpoint, DirectTLSEndpoint)
        for connection in (byAddress, byName):
            answer = await connection.call(Capabilities)
            self.assertIsNotNone(answer["capabilities"].offer)


class LoopbackConnectionTests(ServerConnectionContract, TestCase):
    def makeConnection(self, secret: str | None = None) -> Any:
        return self.running.loopback(reactor, secret)


class OneShotConnectionTests(ServerConnectionContract, TestCase):
    def makeConnection(self, secret: str | None = None) -> OneShotConnection:
        server = self.running.server
        config = server.clientConfig()
        return OneShotConnection(
            reactor, config, Credentials(config.clientId, secret or server.secret, server.token))

    async def test_connectsWhenFirstUsedAndStopCloses(self) -> None:
        """No service to start: the first call connects; stop closes the connection."""
        connection = await self.connected()
        self.assertFalse(hasattr(connection, "service"))
        self.assertIsInstance(connection.endpoint._endpoint, DirectTLSEndpoint)  # 127.0.0.1
        protocol = await connection.connection()
        await connection.stop()
        self.assertTrue(protocol.lost.called)
        self.assertFalse(connection.running)

    async def test_serverNamedByItsName(self) -> None:
        """A name (not an address) is resolved as the daemon's connection resolves it."""
        self.running = await startProducingServer(self)
        server = self.running.server
        config = server.clientConfig(server=ServerAddress("localhost", server.port))
        connection = OneShotConnection(
            reactor, config, Credentials(config.clientId, server.secret, server.token))
        self.addCleanup(connection.stop)
        self.assertNotIsInstance(connection.endpoint._endpoint, DirectTLSEndpoint)
        answer = await connection.call(Capabilities)
        self.assertIsNotNone(answer["capabilities"].offer)

    async def test_concurrentCallsShareOneConnection(self) -> None:
        connection = await self.connected()
        first, second = connection.connection(), connection.connection()
        self.assertIs(await first, await second)


class ScriptedEndpoint:
    """Fails the first C{failures} connection attempts with C{error}, then connects."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.attempts = 0
        self.protocol: Any = None

    def connect(self, factory: Any) -> Deferred[Any]:
        self.attempts += 1
        if self.attempts <= self.failures:
            return fail(self.error)
        self.protocol = factory.buildProtocol(None)
        return succeed(self.protocol)


class OneShotAttemptsTests(TestCase):
    """How many times, and how far apart, a one-shot command tries to connect."""

    def connection(self, failures: int, error: Exception | None = None,
                   attempts: int = 3) -> tuple[OneShotConnection, ScriptedEndpoint, Clock]:
        clock = Clock()
        secret = FilePath(self.mktemp())
        secret.setContent(b"s")
        secret.chmod(0o600)
        config = ClientConfig(clientId="c1", secretFile=secret, licenseFile=secret,
                              server=ServerAddress("127.0.0.1", 7443),
                              fingerprints=("AB:" * 31 + "AB",), connectAttempts=attempts)
        connection = OneShotConnection(clock, config, Credentials("c1", "s", "t"))
        endpoint = ScriptedEndpoint(failures, error or ConnectionRefusedError())
        connection.endpoint = endpoint  # type: ignore[assignment]
        return connection, endpoint, clock

    def test_givesUpAfterConnectAttemptsWithTheAddress(self) -> None:
        connection, endpoint, clock = self.connection(failures=5, attempts=3)
        connecting = Deferred.fromCoroutine(connection._connect())
        self.assertEqual(endpoint.attempts, 1)
        clock.advance(retryDelay(1, lambda: 1.0))  # the longest first wait
        self.assertEqual(endpoint.attempts, 2)
        clock.advance(retryDelay(2, lambda: 1.0))
        self.assertEqual(endpoint.attempts, 3)
        error = self.failureResultOf(connecting, BackupRemoteError).value
        self.assertEqual(error.code, errors.CONNECTION_FAILED)
        self.assertIn("cannot connect to the server at 127.0.0.1:7443: connection refused",
                      error.message)
        clock.advance(120)
        self.assertEqual(endpoint.attempts, 3)

    def test_waitsAsTheReconnectingServiceDoes(self) -> None:
        connection, endpoint, clock = self.connection(failures=1)
        connecting = Deferred.fromCoroutine(connection._connect())
        clock.advance(1.49)  # 1.5 s and some jitter, as backoffPolicy(maxDelay=60)
        self.assertEqual(endpoint.attempts, 1)
        clock.advance(1.01)
        self.assertEqual(endpoint.attempts, 2)
        self.assertIs(self.successResultOf(connecting), endpoint.protocol)
        self.assertEqual(retryDelay(100, lambda: 0.0), 60.0)

    def test_otherFailuresAreKept(self) -> None:
        """A name that does not resolve is no ConnectError: raised as it is, as before."""
        connection, endpoint, clock = self.connection(failures=1, error=DNSLookupError("x"),
                                                      attempts=1)
        self.failureResultOf(Deferred.fromCoroutine(connection._connect()), DNSLookupError)

    def test_stopWhileWaitingEndsTheAttempts(self) -> None:
        connection, endpoint, clock = self.connection(failures=5)
        connecting = Deferred.fromCoroutine(connection._connect())
        self.successResultOf(connection.stop())
        self.failureResultOf(connecting)
        clock.advance(120)
        self.assertEqual(endpoint.attempts, 1)
