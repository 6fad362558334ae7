"""
The ONE contract test suite of L{INotificationChannel}, run on the email
channel (a real SMTP server), the webhook channel (a real twisted.web
receiver) and the in-memory twin.

An implementation's test module gives a fixture that makes a channel and
the receiving end's view of what arrived:

    async def emailFixture(case: TestCase) -> ChannelFixture:
        server = startSMTPServer(case)
        return ChannelFixture(EmailChannel(...), received=server.received,
                              refuseNext=server.refuseNext, secrets=(PASSWORD,))

    class EmailContractTests(makeChannelTests(emailFixture)):
        pass

C{received()} reads the receiver's side (the SMTP server's kept
messages, the webhook requests whose signature checked), not the channel,
so the suite sees what a person would get.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from backupremote.client.notify import (
    INotificationChannel,
    LicenseExpiring,
    Notification,
    RunFailed,
    ScheduleMissed,
    ServerReachable,
)
from backupremote.protocol.errors import NOTIFICATION_FAILED, BackupRemoteError

WHEN = datetime(2026, 11, 30, 1, 30, tzinfo=timezone.utc)


@frozen
class Received:
    """One message as the receiving end got it."""

    subject: str
    text: str
    #: the notification's id, as the receiver can read it
    id: str
    #: everything that arrived for it (headers and body), to look for secrets
    raw: bytes


@frozen
class ChannelFixture:
    """
    @ivar received: C{received()} the messages that arrived, in order.
    @ivar refuseNext: C{refuseNext()} makes the receiver refuse the next
        message for good (a 5xx mail answer, a 4xx HTTP answer).
    @ivar secrets: what must appear nowhere: not in a message, an error
        or a log line.
    """

    channel: Any
    received: Callable[[], Sequence[Received]]
    refuseNext: Callable[[], None]
    secrets: tuple[bytes, ...] = ()


Fixture = Callable[[TestCase], Awaitable[ChannelFixture]]


def failed() -> RunFailed:
    return RunFailed("0b6a1c3e-0000-5000-8000-000000000001", "sched-1", "default", "shop",
                     "DUMP_FAILED", "pg_dump exited with status 1: out of memory",
                     scheduleName="nightly", step="follow")


async def _maybe(result: Any) -> Any:
    if isinstance(result, Deferred) or inspect.isawaitable(result):
        return await result
    return result


def makeChannelTests(fixture: Fixture) -> type[TestCase]:
    """A L{TestCase} of the channel contract; subclass it in a test module to run it."""

    class ChannelContractTests(TestCase):
        timeout = 60

        async def setUp(self) -> None:
            self.logged: list[str] = []

            def observe(event: dict[str, Any]) -> None:
                self.logged.append(formatEvent(event) or "")
                if event.get("log_failure") is not None:
                    self.logged.append(str(event["log_failure"].value))

            globalLogPublisher.addObserver(observe)
            self.addCleanup(globalLogPublisher.removeObserver, observe)
            self.fixture = await fixture(self)
            self.channel = self.fixture.channel

        async def send(self, *events: Any, omitted: int = 0) -> Notification:
            notification = Notification(events, WHEN, omitted)
            await _maybe(self.channel.send(notification))
            return notification

        def test_interface(self) -> None:
            self.assertTrue(verifyObject(INotificationChannel, self.channel))
            self.assertIsInstance(self.channel.name, str)

        async def test_oneEvent(self) -> None:
            """One notification arrives once, with its subject, its text and its id."""
            sent = await self.send(failed())
            [received] = self.fixture.received()
            self.assertEqual(received.subject, sent.subject)
            self.assertIn("backup of shop on default FAILED: DUMP_FAILED", received.subject)
            self.assertIn("pg_dump exited with status 1: out of memory", received.text)
            self.assertIn("schedule nightly", received.text)
            self.assertEqual(received.id, sent.id)

        async def test_inOrder(self) -> None:
            first = await self.send(failed())
            second = await self.send(ServerReachable("db1", WHEN, 2))
            self.assertEqual([r.id for r in self.fixture.received()], [first.id, second.id])
            self.assertIn("recovered and failed again 2 times",
                          self.fixture.received()[1].text)

        async def test_digest(self) -> None:
            """A digest is one message listing every event, and the count left out."""
            events = (failed(),
                      ScheduleMissed("sched-2", WHEN, "the client was down", "hourly"),
                      LicenseExpiring("default", WHEN, 7))
            sent = await self.send(*events, omitted=2)
            [received] = self.fixture.received()
            self.assertEqual(received.subject, sent.subject)
            self.assertIn("5 notifications", received.subject)
            for event in events:
                self.assertIn(event.details(), " ".join(received.text.split()))
            self.assertIn("and 2 more", received.text)

        async def test_text(self) -> None:
            """Any text arrives as it was: non-ASCII, long lines, a line break in a field."""
            event = RunFailed("r", None, "Zürich-Ω", "données\nsecond line", "DB_ERROR",
                              "x" * 500)
            sent = await self.send(event)
            [received] = self.fixture.received()
            self.assertEqual(received.subject, sent.subject)
            self.assertNotIn("\n", received.subject)
            self.assertIn("Zürich-Ω", received.text)
            self.assertIn("x" * 500, "".join(received.text.split()))

        async def test_refused(self) -> None:
            """A refusal that will not pass fails the send with NOTIFICATION_FAILED."""
            self.fixture.refuseNext()
            with self.assertRaises(BackupRemoteError) as caught:
                await self.send(failed())
            self.assertEqual(caught.exception.code, NOTIFICATION_FAILED)
            self.assertEqual(self.fixture.received(), [])

        async def test_noSecretAnywhere(self) -> None:
            """No secret in what arrived, in an error or in a log line."""
            await self.send(failed())
            self.fixture.refuseNext()
            with self.assertRaises(BackupRemoteError) as caught:
                await self.send(failed())
            places = [r.raw for r in self.fixture.received()]
            places += [str(caught.exception).encode("utf-8"),
                       repr(self.channel).encode("utf-8")]
            places += [line.encode("utf-8") for line in self.logged]
            self.assertTrue(places[0])
            for secret in self.fixture.secrets:
                for place in places:
                    self.assertNotIn(secret, place)

    return ChannelContractTests
