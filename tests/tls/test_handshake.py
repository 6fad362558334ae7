"""
Real TLS handshakes over TCP on 127.0.0.1 between L{serverContextFactory}
and the client creators, with an echo protocol on top.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import (
    CONFIG_INVALID,
    TLS_FAILED,
    TLS_FINGERPRINT_MISMATCH,
    BackupRemoteError,
)
from backupremote.tls import (
    PinnedCertificateCreator,
    clientCreator,
    describeTLSFailure,
    fingerprintOfPem,
    generateCertificateAuthority,
    generateServerCertificate,
    issueClientCertificate,
    issueServerCertificate,
    serverContextFactory,
)

MESSAGE = b"hello over TLS\n"

# Key material is slow-ish to make; one set serves every test.
SERVER_KEY, SERVER_CERT = generateServerCertificate(["backup.example.com"])
OTHER_KEY, OTHER_CERT = generateServerCertificate(["backup.example.com"])
CA_KEY, CA_CERT = generateCertificateAuthority("backupremote test CA")
ISSUED_KEY, ISSUED_CERT = issueServerCertificate(CA_KEY, CA_CERT, ["localhost"])
UNRELATED_CA_KEY, UNRELATED_CA_CERT = generateCertificateAuthority("unrelated CA")
CLIENT_KEY, CLIENT_CERT = issueClientCertificate(CA_KEY, CA_CERT, "client-1")
ROGUE_KEY, ROGUE_CERT = issueClientCertificate(
    UNRELATED_CA_KEY, UNRELATED_CA_CERT, "client-1"
)


class EchoServer(Protocol):
    """Echoes; remembers the SNI name it was asked for and how it ended."""

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None
        self.serverName: bytes | None = None

    def dataReceived(self, data: bytes) -> None:
        self.serverName = self.transport.getHandle().get_servername()
        self.transport.write(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class EchoClient(Protocol):
    """Sends L{MESSAGE}, hangs up once it is echoed back."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self.reason: Failure | None = None

    def connectionMade(self) -> None:
        self.transport.write(MESSAGE)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if self.received == MESSAGE:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.reason = reason
        self.lost.callback(None)


class HandshakeMixin:
    """Listening and connecting, with everything cleaned up after."""

    timeout = 20

    @inlineCallbacks
    def listen(self, contextFactory: Any) -> Any:
        """Listen with C{contextFactory} on 127.0.0.1; the port number."""
        servers: list[EchoServer] = []
        self.servers = servers

        def buildServer() -> EchoServer:
            server = EchoServer()
            servers.append(server)
            return server

        factory = Factory.forProtocol(buildServer)
        port = yield serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
            TLSMemoryBIOFactory(contextFactory, False, factory)
        )
        self.addCleanup(port.stopListening)
        self.addCleanup(lambda: gatherResults([server.lost for server in servers]))
        return port.getHost().port

    @inlineCallbacks
    def exchange(self, creator: Any, port: int) -> Any:
        """Connect with C{creator}, send L{MESSAGE}: C{(client, reason)}."""
        tcp = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        endpoint = wrapClientTLS(creator, tcp)
        client = yield endpoint.connect(Factory.forProtocol(EchoClient))
        yield client.lost
        return client, client.reason

    @inlineCallbacks
    def assertEchoes(self, serverOptions: Any, creator: Any) -> Any:
        """The handshake succeeds and L{MESSAGE} comes back."""
        port = yield self.listen(serverOptions)
        client, reason = yield self.exchange(creator, port)
        self.assertEqual(client.received, MESSAGE)
        reason.trap(ConnectionDone)
        return client

    @inlineCallbacks
    def assertHandshakeFails(self, serverOptions: Any, creator: Any) -> Any:
        """
        Nothing is echoed and the connection is lost; the registered error
        L{describeTLSFailure} makes of it.
        """
        port = yield self.listen(serverOptions)
        client, reason = yield self.exchange(creator, port)
        self.assertEqual(client.received, b"")
        error = describeTLSFailure(creator, reason)
        self.assertIsInstance(error, BackupRemoteError, reason)
        return error


class PinnedFingerprintTests(HandshakeMixin, TestCase):
    """The client trusts the server certificate with the pinned fingerprint."""

    def test_pinnedFingerprintEchoes(self) -> Any:
        creator = clientCreator("127.0.0.1", fingerprintOfPem(SERVER_CERT), None)
        self.assertIsInstance(creator, PinnedCertificateCreator)
        return self.assertEchoes(serverContextFactory(SERVER_KEY, SERVER_CERT), creator)

    def test_pinInAnyNotation(self) -> Any:
        """Lowercase, without colons, with a C{sha256:} prefix: same pin."""
        pin = "sha256:" + fingerprintOfPem(SERVER_CERT).replace(":", "").lower()
        return self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("127.0.0.1", pin, None),
        )

    def test_pinIgnoresHostname(self) -> Any:
        """The pin alone decides: a name the certificate lacks is fine."""
        return self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("elsewhere.example.org", fingerprintOfPem(SERVER_CERT), None),
        )

    def test_pinnedCAIssuedCertificate(self) -> Any:
        """A CA-issued leaf can be pinned too; its chain is not judged."""
        return self.assertEchoes(
            serverContextFactory(ISSUED_KEY, ISSUED_CERT),
            clientCreator("127.0.0.1", fingerprintOfPem(ISSUED_CERT), None),
        )

    @inlineCallbacks
    def test_sniForDnsNames(self) -> Any:
        """A DNS name is sent as SNI, an IP address is not."""
        serverOptions = serverContextFactory(SERVER_KEY, SERVER_CERT)
        pin = fingerprintOfPem(SERVER_CERT)
        yield self.assertEchoes(serverOptions, clientCreator("localhost", pin, None))
        self.assertEqual(self.servers[0].serverName, b"localhost")
        yield self.assertEchoes(serverOptions, clientCreator("127.0.0.1", pin, None))
        self.assertIsNone(self.servers[0].serverName)

    @inlineCallbacks
    def test_wrongPinFails(self) -> Any:
        """
        Another certificate than the pinned one fails the handshake, and
        the error names both fingerprints.
        """
        expected = fingerprintOfPem(OTHER_CERT)
        actual = fingerprintOfPem(SERVER_CERT)
        creator = clientCreator("127.0.0.1", expected, None)
        error = yield self.assertHandshakeFails(
            serverContextFactory(SERVER_KEY, SERVER_CERT), creator
        )
        self.assertEqual(error.code, TLS_FINGERPRINT_MISMATCH)
        self.assertIn(f"fingerprint is {actual}, expected {expected}", error.message)
        self.assertEqual(error.details, {"expected": expected, "actual": actual})
        self.assertEqual(creator.mismatch, (expected, actual))

    @inlineCallbacks
    def test_anyOfSeveralPins(self) -> Any:
        """
        With several pins (a certificate rotation), a certificate with any of
        them is accepted, in whatever order they are given.
        """
        pins = [fingerprintOfPem(OTHER_CERT), fingerprintOfPem(SERVER_CERT)]
        for order in (pins, pins[::-1]):
            creator = clientCreator("127.0.0.1", order, None)
            self.assertEqual(creator.fingerprints, tuple(order))
            yield self.assertEchoes(serverContextFactory(SERVER_KEY, SERVER_CERT), creator)
            yield self.assertEchoes(serverContextFactory(OTHER_KEY, OTHER_CERT), creator)

    @inlineCallbacks
    def test_noneOfSeveralPins(self) -> Any:
        """A certificate with none of the pins fails, and the error names them all."""
        pins = [fingerprintOfPem(OTHER_CERT), fingerprintOfPem(ISSUED_CERT)]
        actual = fingerprintOfPem(SERVER_CERT)
        creator = clientCreator("127.0.0.1", pins, None)
        error = yield self.assertHandshakeFails(
            serverContextFactory(SERVER_KEY, SERVER_CERT), creator
        )
        self.assertEqual(error.code, TLS_FINGERPRINT_MISMATCH)
        self.assertIn(f"fingerprint is {actual}, expected one of {pins[0]}, {pins[1]}",
                      error.message)
        self.assertIn("backupremote server fingerprint", error.action)
        self.assertIn("fingerprints = [", error.action)

    def test_pinListRefusesEmptyAndMalformed(self) -> None:
        for pins in ([], ["AB:CD"], [fingerprintOfPem(SERVER_CERT), "nope"]):
            error = self.assertRaises(BackupRemoteError, PinnedCertificateCreator, pins)
            self.assertEqual(error.code, CONFIG_INVALID, pins)

    def test_repeatedPinsCollapse(self) -> None:
        pin = fingerprintOfPem(SERVER_CERT)
        creator = PinnedCertificateCreator([pin, pin.replace(":", "").lower()])
        self.assertEqual(creator.fingerprints, (pin,))

    @inlineCallbacks
    def test_mismatchResetPerConnection(self) -> Any:
        """A creator reused after a mismatch reports the new outcome."""
        creator = clientCreator("127.0.0.1", fingerprintOfPem(SERVER_CERT), None)
        yield self.assertHandshakeFails(
            serverContextFactory(OTHER_KEY, OTHER_CERT), creator
        )
        self.assertIsNotNone(creator.mismatch)
        yield self.assertEchoes(serverContextFactory(SERVER_KEY, SERVER_CERT), creator)
        self.assertIsNone(creator.mismatch)


class CreatorSkippingVerification(PinnedCertificateCreator):
    """As if OpenSSL never asked about the leaf during the handshake."""

    def _verify(self, *args: Any) -> bool:
        return True


class HandshakeDoneCheckTests(HandshakeMixin, TestCase):
    """
    Whatever path a handshake takes, it ends with the pinned certificate or
    the connection is failed.
    """

    @inlineCallbacks
    def test_otherCertificate(self) -> Any:
        expected = fingerprintOfPem(SERVER_CERT)
        creator = CreatorSkippingVerification(expected, "localhost")
        error = yield self.assertHandshakeFails(
            serverContextFactory(OTHER_KEY, OTHER_CERT), creator
        )
        self.assertEqual(error.code, TLS_FINGERPRINT_MISMATCH)
        self.assertEqual(creator.mismatch, (expected, fingerprintOfPem(OTHER_CERT)))

    def test_pinnedCertificate(self) -> Any:
        return self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            CreatorSkippingVerification(fingerprintOfPem(SERVER_CERT), "localhost"),
        )

    def test_noCertificate(self) -> None:
        """A handshake without a server certificate is failed too."""
        failed: list[Failure] = []

        class FakeConnection:
            def get_peer_certificate(self, *, as_cryptography: bool = False) -> None:
                return None

            def get_app_data(self) -> Any:
                return self

            def failVerification(self, reason: Failure) -> None:
                failed.append(reason)

        creator = PinnedCertificateCreator(fingerprintOfPem(SERVER_CERT))
        creator._checkOnHandshakeDone(FakeConnection(), SSL.SSL_CB_HANDSHAKE_DONE, 1)
        self.assertEqual(len(failed), 1)
        self.assertEqual(
            describeTLSFailure(creator, failed[0]).code, TLS_FINGERPRINT_MISMATCH
        )
        self.assertEqual(creator.mismatch[1], "(no certificate)")


class CAFileTests(HandshakeMixin, TestCase):
    """The client trusts a CA file and checks the host name."""

    def test_selfSignedCertificateAsCAFile(self) -> Any:
        return self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("localhost", None, SERVER_CERT),
        )

    def test_certificateIssuedByCA(self) -> Any:
        return self.assertEchoes(
            serverContextFactory(ISSUED_KEY, ISSUED_CERT),
            clientCreator("localhost", None, CA_CERT),
        )

    def test_caBundle(self) -> Any:
        """Any CA of a bundle will do."""
        return self.assertEchoes(
            serverContextFactory(ISSUED_KEY, ISSUED_CERT),
            clientCreator("localhost", None, UNRELATED_CA_CERT + CA_CERT),
        )

    @inlineCallbacks
    def test_unrelatedCAFails(self) -> Any:
        error = yield self.assertHandshakeFails(
            serverContextFactory(ISSUED_KEY, ISSUED_CERT),
            clientCreator("localhost", None, UNRELATED_CA_CERT),
        )
        self.assertEqual(error.code, TLS_FAILED)
        self.assertIn("certificate verify failed", error.message)

    @inlineCallbacks
    def test_wrongHostnameFails(self) -> Any:
        """A trusted certificate that does not name the host is refused."""
        error = yield self.assertHandshakeFails(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("backup.example.org", None, SERVER_CERT),
        )
        self.assertEqual(error.code, TLS_FAILED)
        self.assertIn("does not name backup.example.org", error.message)

    @inlineCallbacks
    def test_wrongHostnameOfIssuedCertificateFails(self) -> Any:
        error = yield self.assertHandshakeFails(
            serverContextFactory(ISSUED_KEY, ISSUED_CERT),
            clientCreator("backup.example.org", None, CA_CERT),
        )
        self.assertEqual(error.code, TLS_FAILED)

    def test_ipAddressInCertificate(self) -> Any:
        return self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("127.0.0.1", None, SERVER_CERT),
        )

    @inlineCallbacks
    def test_ipAddressNotInCertificateFails(self) -> Any:
        """
        An IP address is checked against the certificate's IP addresses
        (the TCP connection still goes to 127.0.0.1).
        """
        error = yield self.assertHandshakeFails(
            serverContextFactory(SERVER_KEY, SERVER_CERT),
            clientCreator("10.0.0.9", None, SERVER_CERT),
        )
        self.assertEqual(error.code, TLS_FAILED)
        self.assertIn("does not name 10.0.0.9", error.message)


class ProtocolVersionTests(HandshakeMixin, TestCase):
    """The server speaks TLS 1.2 or newer only."""

    @inlineCallbacks
    def test_tls11ClientFails(self) -> Any:
        creator = PinnedCertificateCreator(fingerprintOfPem(SERVER_CERT), "localhost")
        # Let the client offer TLS 1.0-1.1 only, so that it is the server that
        # refuses.
        creator.context.set_min_proto_version(SSL.TLS1_VERSION)
        creator.context.set_max_proto_version(SSL.TLS1_1_VERSION)
        creator.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        error = yield self.assertHandshakeFails(
            serverContextFactory(SERVER_KEY, SERVER_CERT), creator
        )
        self.assertEqual(error.code, TLS_FAILED)
        yield self.servers[0].lost
        serverReason = self.servers[0].reason
        self.assertTrue(serverReason.check(SSL.Error), serverReason)
        self.assertIn("unsupported protocol", str(serverReason.value))

    @inlineCallbacks
    def test_tls12ClientEchoes(self) -> Any:
        creator = PinnedCertificateCreator(fingerprintOfPem(SERVER_CERT), "localhost")
        creator.context.set_max_proto_version(SSL.TLS1_2_VERSION)
        client = yield self.assertEchoes(
            serverContextFactory(SERVER_KEY, SERVER_CERT), creator
        )
        self.assertEqual(
            client.transport.getHandle().get_protocol_version_name(), "TLSv1.2"
        )


class MutualTLSTests(HandshakeMixin, TestCase):
    """With a client CA, the server requires a client certificate it signed."""

    def setUp(self) -> None:
        self.serverOptions = serverContextFactory(SERVER_KEY, SERVER_CERT, CA_CERT)
        self.pin = fingerprintOfPem(SERVER_CERT)

    def test_pinnedClientWithCertificate(self) -> Any:
        return self.assertEchoes(
            self.serverOptions,
            clientCreator("localhost", self.pin, None, CLIENT_CERT, CLIENT_KEY),
        )

    def test_caFileClientWithCertificate(self) -> Any:
        return self.assertEchoes(
            self.serverOptions,
            clientCreator("localhost", None, SERVER_CERT, CLIENT_CERT, CLIENT_KEY),
        )

    @inlineCallbacks
    def test_clientWithoutCertificateFails(self) -> Any:
        error = yield self.assertHandshakeFails(
            self.serverOptions, clientCreator("localhost", self.pin, None)
        )
        self.assertEqual(error.code, TLS_FAILED)

    @inlineCallbacks
    def test_clientWithCertificateFromAnotherCAFails(self) -> Any:
        error = yield self.assertHandshakeFails(
            self.serverOptions,
            clientCreator("localhost", self.pin, None, ROGUE_CERT, ROGUE_KEY),
        )
        self.assertEqual(error.code, TLS_FAILED)

    @inlineCallbacks
    def test_caFileClientWithCertificateFromAnotherCAFails(self) -> Any:
        error = yield self.assertHandshakeFails(
            self.serverOptions,
            clientCreator("localhost", None, SERVER_CERT, ROGUE_CERT, ROGUE_KEY),
        )
        self.assertEqual(error.code, TLS_FAILED)


class ConfigurationTests(TestCase):
    """Bad TLS settings are refused before any connection."""

    def assertConfigInvalid(self, f: Any, *args: Any) -> BackupRemoteError:
        error = self.assertRaises(BackupRemoteError, f, *args)
        self.assertEqual(error.code, CONFIG_INVALID)
        return error

    def test_neitherFingerprintNorCA(self) -> None:
        error = self.assertConfigInvalid(clientCreator, "localhost", None, None)
        self.assertIn("pin a fingerprint or give a CA file", error.message)

    def test_bothFingerprintAndCA(self) -> None:
        self.assertConfigInvalid(
            clientCreator, "localhost", fingerprintOfPem(SERVER_CERT), CA_CERT
        )

    def test_badFingerprint(self) -> None:
        self.assertConfigInvalid(clientCreator, "localhost", "AB:CD", None)

    def test_badCAFile(self) -> None:
        self.assertConfigInvalid(clientCreator, "localhost", None, b"not a PEM")

    def test_clientCertificateWithoutKey(self) -> None:
        pin = fingerprintOfPem(SERVER_CERT)
        self.assertConfigInvalid(clientCreator, "localhost", pin, None, CLIENT_CERT)
        self.assertConfigInvalid(
            clientCreator, "localhost", None, CA_CERT, CLIENT_CERT, None
        )

    def test_clientKeyOfAnotherCertificate(self) -> None:
        self.assertConfigInvalid(
            clientCreator,
            "localhost",
            fingerprintOfPem(SERVER_CERT),
            None,
            CLIENT_CERT,
            ROGUE_KEY,
        )

    def test_serverKeyOfAnotherCertificate(self) -> None:
        error = self.assertConfigInvalid(serverContextFactory, OTHER_KEY, SERVER_CERT)
        self.assertIn("does not belong", error.message)

    def test_badServerFiles(self) -> None:
        self.assertConfigInvalid(serverContextFactory, b"junk", SERVER_CERT)
        self.assertConfigInvalid(serverContextFactory, SERVER_KEY, b"junk")
        self.assertConfigInvalid(serverContextFactory, SERVER_KEY, SERVER_CERT, b"junk")


class DescribeTLSFailureTests(TestCase):
    """L{describeTLSFailure} only speaks for TLS failures."""

    def test_notTLS(self) -> None:
        creator = clientCreator("localhost", fingerprintOfPem(SERVER_CERT), None)
        creator.mismatch = ("A", "B")  # a stale one from an earlier attempt
        refused = Failure(ConnectionRefusedError())
        self.assertIsNone(describeTLSFailure(creator, refused))
        self.assertIsNone(describeTLSFailure(creator, Failure(ConnectionDone())))

    def test_backupRemoteErrorPassesThrough(self) -> None:
        error = BackupRemoteError(TLS_FAILED, "x")
        self.assertIs(describeTLSFailure(None, error), error)

    def test_opensslReasons(self) -> None:
        error = describeTLSFailure(
            None, SSL.Error([("SSL routines", "", "tlsv1 alert unknown ca")])
        )
        self.assertEqual(error.code, TLS_FAILED)
        self.assertIn("tlsv1 alert unknown ca", error.message)
