"""
The webhook channel against a real twisted.web receiver on 127.0.0.1 that
checks every request's signature: the contract, the signature, retries
with backoff on the channel's clock, timeouts, TLS pinning, URL rules.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.notify import Notification, WebhookChannel
from backupremote.client.notify.webhook import checkWebhookURL, signature
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    NOTIFICATION_FAILED,
    TIMEOUT,
    BackupRemoteError,
    lookup,
)
from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate
from tests.client.notify.contract import ChannelFixture, failed, makeChannelTests
from tests.client.notify.waiting import advanceOnceArmed
from tests.client.notify.webreceiver import SECRET, startReceiver

WHEN = datetime(2026, 11, 30, 1, 30, tzinfo=timezone.utc)


async def webhookFixture(case: TestCase) -> ChannelFixture:
    receiver, url, _ = startReceiver(case)
    channel = WebhookChannel(reactor, url, SECRET, timeout=10, retryDelays=())
    case.addCleanup(channel.close)
    # the URL's token too: messages and logs name the receiver by scheme, host and port
    return ChannelFixture(channel, receiver.received, receiver.refuseNext,
                          secrets=(SECRET, b"token=t0k"))


class WebhookChannelContractTests(makeChannelTests(webhookFixture)):  # type: ignore[misc]
    """The webhook channel passes the contract."""


def notification() -> Notification:
    return Notification((failed(),), WHEN)


class WebhookChannelTests(TestCase):
    timeout = 60

    def channel(self, url: str, **options: Any) -> WebhookChannel:
        options.setdefault("timeout", 10)
        options.setdefault("retryDelays", ())
        channel = WebhookChannel(reactor, url, options.pop("secret", SECRET), **options)
        self.addCleanup(channel.close)
        return channel

    async def test_signedRequest(self) -> None:
        """One POST, JSON, signed over the timestamp and the body; the receiver checks it."""
        receiver, url, _ = startReceiver(self)
        clock = Clock()
        clock.advance(1_800_000_000)
        sent = notification()
        await self.channel(url, clock=clock).send(sent)
        [request] = receiver.requests
        self.assertTrue(request.valid)
        self.assertEqual(request.path, b"/hooks/backup?token=t0k")
        self.assertEqual(request.headers["content-type"], "application/json")
        self.assertEqual(request.headers["x-backupremote-id"], sent.id)
        self.assertEqual(request.headers["x-backupremote-timestamp"], "1800000000")
        self.assertEqual(request.headers["x-backupremote-signature"],
                         signature(SECRET, "1800000000", request.body))
        payload = json.loads(request.body)
        self.assertEqual(payload["version"], 1)
        self.assertEqual(payload["events"], [{
            "type": "RunFailed", "kind": "failure",
            "runId": "0b6a1c3e-0000-5000-8000-000000000001", "scheduleId": "sched-1",
            "scheduleName": "nightly", "server": "default", "database": "shop",
            "errorCode": "DUMP_FAILED", "step": "follow",
            "message": "pg_dump exited with status 1: out of memory",
            "action": lookup("DUMP_FAILED").action}])
        self.assertIn("What to do: " + lookup("DUMP_FAILED").action, payload["text"])

    async def test_wrongSecret(self) -> None:
        """A receiver that cannot check the signature answers 401: not retried."""
        receiver, url, _ = startReceiver(self)
        clock = Clock()
        with self.assertRaises(BackupRemoteError) as caught:
            await self.channel(url, secret=b"another secret", clock=clock,
                               retryDelays=(5.0,)).send(notification())
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertIn("answered 401: bad signature", caught.exception.message)
        self.assertNotIn("t0k", caught.exception.message, "the URL's path is not quoted")
        self.assertEqual([r.valid for r in receiver.requests], [False])

    async def test_retriedWithBackoff(self) -> None:
        """503, then 429, then 200: two retries after 5 and 30 s on the clock, one id."""
        receiver, url, _ = startReceiver(self)
        receiver.answers[:] = [503, 429]
        clock = Clock()
        sending = self.channel(url, clock=clock, retryDelays=(5.0, 30.0, 120.0)).send(
            notification())
        await advanceOnceArmed(clock, 5.0)
        await advanceOnceArmed(clock, 30.0)
        await sending
        self.assertEqual([r.status for r in receiver.requests], [503, 429, 200])
        self.assertEqual(len({r.headers["x-backupremote-id"] for r in receiver.requests}), 1)
        self.assertEqual([r.headers["x-backupremote-timestamp"] for r in receiver.requests],
                         ["0", "5", "35"])
        self.assertTrue(all(r.valid for r in receiver.requests))

    async def test_retriesUsedUp(self) -> None:
        receiver, url, _ = startReceiver(self)
        receiver.answers[:] = [500, 502]
        clock = Clock()
        sending = self.channel(url, clock=clock, retryDelays=(5.0,)).send(notification())
        await advanceOnceArmed(clock, 5.0)
        with self.assertRaises(BackupRemoteError) as caught:
            await sending
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertIn("answered 502", caught.exception.message)
        self.assertEqual(receiver.received(), [])

    async def test_silentReceiver(self) -> None:
        """A receiver that never answers: TIMEOUT after the timeout, on the clock."""
        connected: Deferred[None] = Deferred()

        class Silent(Protocol):
            def connectionMade(self) -> None:
                connected.callback(None)

        port = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        clock = Clock()
        sending = self.channel(f"http://127.0.0.1:{port.getHost().port}/", clock=clock).send(
            notification())
        await connected
        clock.advance(10)
        with self.assertRaises(BackupRemoteError) as caught:
            await sending
        self.assertEqual(caught.exception.code, TIMEOUT)

    async def test_nobodyListening(self) -> None:
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        with self.assertRaises(BackupRemoteError) as caught:
            await self.channel(f"http://127.0.0.1:{number}/").send(notification())
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertIn(f"cannot reach the webhook http://127.0.0.1:{number}",
                      caught.exception.message)

    async def test_httpsPinned(self) -> None:
        receiver, url, fingerprint = startReceiver(self, tls=True)
        assert fingerprint is not None
        await self.channel(url, verification=PeerVerification(fingerprints=[fingerprint])
                           ).send(notification())
        self.assertEqual(len(receiver.received()), 1)

    async def test_httpsWrongPin(self) -> None:
        """Another certificate than the pinned one: nothing is sent, nothing retried."""
        receiver, url, _ = startReceiver(self, tls=True)
        other = fingerprintOfPem(generateServerCertificate(["localhost"], days=2)[1])
        clock = Clock()
        with self.assertRaises(BackupRemoteError) as caught:
            await self.channel(url, clock=clock, retryDelays=(5.0,),
                               verification=PeerVerification(fingerprints=[other])
                               ).send(notification())
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertIn("TLS failed", caught.exception.message)
        self.assertEqual(receiver.requests, [])

    async def test_httpsUntrusted(self) -> None:
        """The system's CAs do not trust a self-signed certificate."""
        receiver, url, _ = startReceiver(self, tls=True)
        with self.assertRaises(BackupRemoteError) as caught:
            await self.channel(url).send(notification())
        self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
        self.assertEqual(receiver.requests, [])


class WebhookURLTests(SynchronousTestCase):
    def test_allowed(self) -> None:
        for url in ("https://hooks.example.org/x?token=1", "http://127.0.0.1:8080/h",
                    "http://[::1]/h", "http://localhost/h"):
            self.assertEqual(checkWebhookURL(url), url)

    def test_refused(self) -> None:
        for url in ("http://hooks.example.org/x", "ftp://example.org/", "https:///x",
                    "https://user:pw@example.org/", "hooks.example.org"):
            with self.assertRaises(BackupRemoteError) as caught:
                checkWebhookURL(url)
            self.assertEqual(caught.exception.code, CONFIG_INVALID, url)

    def test_noEmptySecret(self) -> None:
        with self.assertRaises(ValueError):
            WebhookChannel(reactor, "https://example.org/", b"")
