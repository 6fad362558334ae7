"""
The server over real TLS on 127.0.0.1, driven by the client library.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher
from twisted.protocols import amp
from twisted.trial.unittest import TestCase

from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.tls.certificates import (
    generateCertificateAuthority,
    issueClientCertificate,
)
from tests.integration.servers import startServer


class Collector(Protocol):
    """Records what a raw peer receives, and when the connection ends."""

    def __init__(self) -> None:
        self.received = b""
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(None)


def capabilitiesBox() -> bytes:
    return amp.AmpBox({b"_command": b"capabilities", b"_ask": b"1"}).serialize()


@implementer(IOpenSSLClientConnectionCreator)
class OldTLS:
    """A client creator that offers nothing newer than TLS 1.1."""

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_max_proto_version(SSL.TLS1_1_VERSION)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        context.set_verify(SSL.VERIFY_NONE, lambda *a: True)
        return SSL.Connection(context, None)


async def rawExchange(port: int, creator: Any = None, timeout: float = 3) -> Collector:
    endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    if creator is not None:
        endpoint = wrapClientTLS(creator, endpoint)
    collector = await connectProtocol(endpoint, Collector())
    collector.transport.write(capabilitiesBox())
    timer = reactor.callLater(timeout, collector.transport.abortConnection)
    await collector.done
    if timer.active():
        timer.cancel()
    return collector


class ServerOverTLSTests(TestCase):
    async def test_capabilitiesWithPinnedFingerprint(self) -> None:
        server = await startServer(self)
        client = server.client(self)
        capabilities = await client.capabilities()
        self.assertEqual(capabilities.apiVersions, [1])
        self.assertIn("remote.control", capabilities.offer.features)

    async def test_fingerprintMismatchIsRefusedClearly(self) -> None:
        server = await startServer(self)
        wrong = "AA:" * 31 + "AA"
        client = server.client(self, fingerprints=(wrong,))
        with self.assertRaises(BackupRemoteError) as raised:
            await client.capabilities()
        error = raised.exception
        self.assertEqual(error.code, errors.TLS_FINGERPRINT_MISMATCH)
        self.assertIn(server.fingerprint, error.message)
        self.assertIn(wrong, error.message)
        self.assertEqual(server.core.store.auditTrail(), [])

    async def test_caFileByHostname(self) -> None:
        server = await startServer(self)
        ca = server.folder.child("ca.pem")
        ca.setContent(server.certPem)
        client = server.client(self, fingerprints=(), caFile=ca,
                               serverName="localhost")
        self.assertEqual((await client.capabilities()).apiVersions, [1])

    async def test_plainTCPGetsNoAMP(self) -> None:
        """A client that does not speak TLS never sees an AMP answer."""
        server = await startServer(self)
        collector = await rawExchange(server.port)
        self.assertNotIn(b"_answer", collector.received)
        self.assertNotIn(b"apiVersions", collector.received)

    async def test_tls11IsRefused(self) -> None:
        server = await startServer(self)
        collector = await rawExchange(server.port, OldTLS())
        self.assertEqual(collector.received, b"")
        self.flushLoggedErrors(SSL.Error)

    async def test_wrongSecretStopsTheConnectionManager(self) -> None:
        server = await startServer(self)
        client = server.client(self, secret="not-the-secret")
        for _ in range(2):
            with self.assertRaises(BackupRemoteError) as raised:
                await client.capabilities()
            self.assertEqual(raised.exception.code, errors.AUTH_FAILED)
        self.assertEqual(
            [outcome for _, _, _, outcome in server.core.store.auditTrail()],
            ["AUTH_FAILED"],
        )

    async def test_reconnectsAndAuthenticatesAgain(self) -> None:
        server = await startServer(self)
        client = server.client(self)
        first = (await client.session())["sessionId"]
        clientSide = await client.connection.connection()
        for connection in list(server.core.connections):
            connection.transport.abortConnection()
        await clientSide.lost  # the client's protocol has seen it go...
        # ...and ClientService, told right after the protocol, at the next turn
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual((await client.capabilities()).apiVersions, [1])
        second = (await client.session())["sessionId"]
        self.assertNotEqual(first, second)
        self.assertEqual(
            [outcome for _, _, _, outcome in server.core.store.auditTrail()], ["ok", "ok"]
        )


class MutualTLSTests(TestCase):
    async def startWithClientCA(self) -> Any:
        caKey, caCert = generateCertificateAuthority("backupremote clients")
        self.caKey, self.caCert = caKey, caCert
        folder = self.mktemp()
        from twisted.python.filepath import FilePath
        path = FilePath(folder)
        path.makedirs()
        path.child("ca.pem").setContent(caCert)
        return await startServer(self, clientCA=path.child("ca.pem"))

    async def test_clientCertificateAccepted(self) -> None:
        server = await self.startWithClientCA()
        key, cert = issueClientCertificate(self.caKey, self.caCert, "integration-client")
        server.folder.child("client.crt").setContent(cert)
        server.folder.child("client.key").setContent(key)
        server.folder.child("client.key").chmod(0o600)
        client = server.client(
            self, clientCert=server.folder.child("client.crt"),
            clientKey=server.folder.child("client.key"),
        )
        capabilities = await client.capabilities()
        self.assertIn("tls-client-certificate", capabilities.authMethods)

    async def test_noClientCertificateRefused(self) -> None:
        server = await self.startWithClientCA()
        client = server.client(self)
        with self.assertRaises(BackupRemoteError) as raised:
            await client.capabilities()
        self.assertEqual(raised.exception.code, errors.TLS_FAILED)
        self.assertEqual(server.core.store.auditTrail(), [])


class LoggingTests(TestCase):
    async def test_secretsNeverLoggedAndLinesCarryIds(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        server = await startServer(self)
        good = server.client(self)
        await good.capabilities()
        bad = server.client(self, secret=server.secret[::-1])
        with self.assertRaises(BackupRemoteError):
            await bad.capabilities()
        await good.close()
        await server.service.stopService()
        logged = server.config.logFile.getContent().decode()
        everything = logged + "\n".join(repr(e) for e in events)
        for secret in (server.secret, server.secret[::-1], server.token):
            self.assertNotIn(secret, everything)
        ours = [json.loads(line) for line in logged.splitlines()
                if '"backupremote.server"' in line]
        self.assertTrue(any("authenticated" in e["log_format"] for e in ours))
        for event in ours:
            self.assertTrue(event["requestId"])
            self.assertTrue(event["peer"].startswith("127.0.0.1:"))
            self.assertIn("clientId", event)
        authenticated = [e for e in ours if "authenticated" in e["log_format"]]
        self.assertEqual(authenticated[0]["clientId"], "integration-client")
        # the refused client's closed connection: summarised per address, not per request
        refusals = [json.loads(line) for line in logged.splitlines()
                    if '"backupremote.server.edge.refusals"' in line]
        self.assertEqual([e["peer"] for e in refusals], ["127.0.0.1"])


async def turnsUntil(condition: Callable[[], bool], turns: int = 100) -> None:
    """Let the reactor turn (no time passes on purpose) until C{condition()} holds."""
    for _ in range(turns):
        if condition():
            return
        await deferLater(reactor, 0, lambda: None)
    raise AssertionError(f"still not so after {turns} reactor turns")


class ClientDaemonTests(TestCase):
    async def test_daemonStopsReconnectingWhenRefused(self) -> None:
        """
        A daemon with a wrong secret says so once and stops, instead of
        reconnecting forever (and locking its address out for others).
        """
        from backupremote.client.service import ClientDaemon

        server = await startServer(self)
        client = server.client(self, secret="wrong-secret", start=False)
        daemon = ClientDaemon(client)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        await daemon.connected
        # the refusal stops the connection at the next reactor turn (callLater(0)):
        # wait for that, in turns, not in seconds
        await turnsUntil(lambda: not client.connection.service.running)
        self.assertEqual(client.connection.stopped.code, errors.AUTH_FAILED)
        # A stopped ClientService has no retry pending and never connects
        # again: once its last connection is closed, one refusal is all
        # the server ever saw.
        await client.connection.stop()
        self.assertEqual(
            [outcome for _, _, _, outcome in server.core.store.auditTrail()], ["AUTH_FAILED"]
        )

    async def test_daemonConnectsAndAnswersNoStartTLS(self) -> None:
        from backupremote.client.service import ClientDaemon

        server = await startServer(self)
        client = server.client(self, start=False)
        daemon = ClientDaemon(client)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        await daemon.connected
        [connection] = list(server.core.connections)
        with self.assertRaises(amp.UnhandledCommand):
            await connection.callRemote(amp.StartTLS)
