"""
The email channel against a real SMTP server on 127.0.0.1 (aiosmtpd):
STARTTLS with the certificate pinned or checked against a CA, login, the
contract, and every way a mail server says no.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.notify import EmailChannel, Notification
from backupremote.protocol.errors import NOTIFICATION_FAILED, TIMEOUT, BackupRemoteError
from backupremote.tls.certificates import (
    fingerprintOfPem,
    generateCertificateAuthority,
    generateServerCertificate,
    issueServerCertificate,
)
from tests.client.notify.contract import ChannelFixture, failed, makeChannelTests
from tests.client.notify.smtpserver import PASSWORD, USER, SMTPTestServer, startSMTPServer
from tests.client.notify.waiting import advanceOnceArmed

WHEN = datetime(2026, 11, 30, 1, 30, tzinfo=timezone.utc)
#: the password as PLAIN and LOGIN put it on the wire
_WIRE_FORMS = (
    PASSWORD.encode(),
    base64.b64encode(PASSWORD.encode()),
    base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()),
    base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()),
)


def channelFor(server: SMTPTestServer, **changes: Any) -> EmailChannel:
    options: dict[str, Any] = dict(
        host="127.0.0.1", port=server.port, sender="backups@example.org",
        recipients=["ops@example.org", "dba@example.org"], user=USER, password=PASSWORD,
        verification=PeerVerification(fingerprints=[server.fingerprint]), timeout=10,
        retryDelays=())
    options.update(changes)
    return EmailChannel(reactor, **options)


async def emailFixture(case: TestCase) -> ChannelFixture:
    server = startSMTPServer(case)
    return ChannelFixture(channelFor(server), server.received, server.refuseNext,
                          secrets=_WIRE_FORMS)


class EmailChannelContractTests(makeChannelTests(emailFixture)):  # type: ignore[misc]
    """The email channel passes the contract."""


def notification() -> Notification:
    return Notification((failed(),), WHEN)


class EmailChannelTests(TestCase):
    timeout = 60

    async def assertRefused(self, channel: EmailChannel, code: str = NOTIFICATION_FAILED
                            ) -> BackupRemoteError:
        with self.assertRaises(BackupRemoteError) as caught:
            await channel.send(notification())
        self.assertEqual(caught.exception.code, code, str(caught.exception))
        for secret in _WIRE_FORMS:
            self.assertNotIn(secret.decode(), str(caught.exception))
        return caught.exception

    async def test_starttlsAndLogin(self) -> None:
        """The message travels inside TLS, after a login, to every recipient."""
        server = startSMTPServer(self)
        await channelFor(server).send(notification())
        [kept] = server.handler.messages
        self.assertTrue(kept.tls)
        self.assertEqual(kept.login, USER)
        self.assertEqual(kept.mailFrom, "backups@example.org")
        self.assertEqual(kept.recipients, ("ops@example.org", "dba@example.org"))
        self.assertIn(b"Auto-Submitted: auto-generated", kept.content)
        self.assertEqual(server.logins, [(server.logins[0][0], True)])

    async def test_caFile(self) -> None:
        """With a CA file, the chain and the server's name are checked."""
        caKey, caCert = generateCertificateAuthority("Test mail CA", days=2)
        server = startSMTPServer(self, certificate=issueServerCertificate(
            caKey, caCert, ["localhost"], days=2))
        channel = channelFor(server, host="localhost",
                             verification=PeerVerification(caPem=caCert))
        await channel.send(notification())
        self.assertEqual(len(server.received()), 1)

    async def test_caFileWrongName(self) -> None:
        """The CA's signature is not enough: the certificate must name the host."""
        caKey, caCert = generateCertificateAuthority("Test mail CA", days=2)
        server = startSMTPServer(self, certificate=issueServerCertificate(
            caKey, caCert, ["localhost"], days=2))

        class ElsewhereChannel(EmailChannel):
            # connects to 127.0.0.1, and expects the certificate of another name
            def _creator(self) -> Any:
                return self.verification.creatorForNetloc(b"mail.example.org", self.port)

        channel = ElsewhereChannel(
            reactor, "127.0.0.1", server.port, "a@example.org", ["b@example.org"],
            user=USER, password=PASSWORD, verification=PeerVerification(caPem=caCert),
            timeout=10, retryDelays=())
        error = await self.assertRefused(channel)
        self.assertIn("TLS failed", error.message)
        self.assertEqual((server.logins, server.received()), ([], []))

    async def test_untrustedCertificate(self) -> None:
        """The system's CAs do not trust a self-signed certificate: nothing is sent."""
        server = startSMTPServer(self)
        error = await self.assertRefused(channelFor(server, verification=PeerVerification()))
        self.assertIn("TLS failed", error.message)
        self.assertIn("the system's trusted CAs", error.message)
        self.assertEqual(server.logins, [], "no login was tried")

    async def test_wrongPin(self) -> None:
        server = startSMTPServer(self)
        other = fingerprintOfPem(generateServerCertificate(["localhost"], days=2)[1])
        error = await self.assertRefused(
            channelFor(server, verification=PeerVerification(fingerprints=[other])))
        self.assertIn("TLS failed", error.message)
        self.assertIn("the pinned fingerprint", error.message)
        self.assertEqual((server.logins, server.received()), ([], []))

    async def test_wrongPassword(self) -> None:
        server = startSMTPServer(self, password="another-one")
        error = await self.assertRefused(channelFor(server))
        self.assertIn(f"refused the login of user {USER}: 535", error.message)
        self.assertEqual(server.received(), [])

    async def test_noStarttlsOffered(self) -> None:
        """A server without STARTTLS gets nothing, not even the message without a login."""
        server = startSMTPServer(self, starttls=False, user=None)
        error = await self.assertRefused(channelFor(server, user=None, password=None))
        self.assertIn("does not offer STARTTLS", error.message)
        self.assertEqual(server.received(), [])

    async def test_relayWithoutTLS(self) -> None:
        """starttls=False, no user: a local relay gets the message in clear."""
        server = startSMTPServer(self, starttls=False, user=None)
        await channelFor(server, user=None, password=None, starttls=False).send(
            notification())
        [kept] = server.handler.messages
        self.assertEqual((kept.tls, kept.login), (False, None))

    def test_noPasswordInClear(self) -> None:
        with self.assertRaises(ValueError):
            EmailChannel(reactor, "127.0.0.1", 25, "a@b.c", ["d@e.f"], starttls=False,
                         user=USER, password=PASSWORD)

    async def test_permanentRefusalNotRetried(self) -> None:
        server = startSMTPServer(self)
        server.refuseNext("550 5.7.1 mailbox unavailable")
        clock = Clock()
        channel = channelFor(server, clock=clock, retryDelays=(5.0,))
        error = await self.assertRefused(channel)
        self.assertIn("refused the message: 550 5.7.1 mailbox unavailable", error.message)
        self.assertEqual([c for c in clock.getDelayedCalls() if c.getTime() == 5.0], [],
                         "no retry is armed")

    async def test_temporaryRefusalRetried(self) -> None:
        """A 4xx answer is tried again after the first delay, on the channel's clock."""
        server = startSMTPServer(self)
        server.refuseNext("451 4.3.0 try again later")
        clock = Clock()
        sending = channelFor(server, clock=clock, retryDelays=(5.0, 30.0)).send(
            notification())
        await advanceOnceArmed(clock, 5.0)
        await sending
        self.assertEqual(len(server.received()), 1)

    async def test_nobodyListening(self) -> None:
        server = SMTPTestServer(self.mktemp_folder())  # never started
        clock = Clock()
        sending = channelFor(server, clock=clock, retryDelays=(5.0,)).send(notification())
        await advanceOnceArmed(clock, 5.0)
        with self.assertRaises(BackupRemoteError) as caught:
            await sending
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertIn(f"cannot connect to the mail server 127.0.0.1:{server.port}",
                      caught.exception.message)

    async def test_silentServer(self) -> None:
        """A server that accepts and never answers: TIMEOUT after the timeout, on the clock."""
        connected: Deferred[None] = Deferred()

        class Silent(Protocol):
            def connectionMade(self) -> None:
                connected.callback(None)

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clock = Clock()
        channel = EmailChannel(reactor, "127.0.0.1", port.getHost().port, "a@example.org",
                               ["b@example.org"], timeout=10, clock=clock, retryDelays=())
        sending = channel.send(notification())
        await connected
        await advanceOnceArmed(clock, 10.0)
        with self.assertRaises(BackupRemoteError) as caught:
            await sending
        self.assertEqual(caught.exception.code, TIMEOUT)

    def mktemp_folder(self) -> Any:
        from twisted.python.filepath import FilePath

        return FilePath(self.mktemp())
