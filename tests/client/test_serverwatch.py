"""
What a connection tells the daemon about its server (L{ServerWatch}): an
outage once (when it began), the recovery once, and the licence's expiry at
every login; through the real connection code on a Clock with the
in-memory twin L{LoopbackConnection} and a real server core, and on to the
notifier, which alerts only an outage that lasts.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection import Credentials
from backupremote.client.connection.watch import ServerWatch
from backupremote.client.notify import LicenseExpiryWatch, Notifier, Route, Rules
from backupremote.client.notify.events import (
    LicenseExpiring,
    ServerReachable,
    ServerUnreachable,
)
from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.session import Capabilities
from backupremote.testing import LoopbackConnection, MemoryNotificationChannel
from tests.fixtures import CLIENT_ID, SECRET
from tests.server.transfers.helpers import StagingMixin

UTC = timezone.utc
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


class Licenses:
    def __init__(self) -> None:
        self.seen: list[tuple[str, datetime | None]] = []

    def observe(self, server: str, expiresAt: datetime | None) -> None:
        self.seen.append((server, expiresAt))


class ServerWatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.told: list[Any] = []
        self.licenses = Licenses()
        self.watch = ServerWatch(self.clock, "east", self.told.append, self.licenses)

    def test_anOutageIsToldOnceWithItsStart(self) -> None:
        self.watch.failed(BackupRemoteError(errors.CONNECTION_FAILED, "refused"))
        self.clock.advance(60)
        self.watch.failed(BackupRemoteError(errors.TIMEOUT, "no answer"))
        self.assertEqual(self.told, [ServerUnreachable("east", T0, errors.CONNECTION_FAILED,
                                                       "refused")])
        self.watch.authenticated({"licenseExpiresAt": "2026-12-29T12:00:00Z"})
        self.watch.authenticated({"licenseExpiresAt": "2026-12-29T12:00:00Z"})
        self.assertEqual(self.told[1:], [ServerReachable("east")])
        self.assertEqual(self.licenses.seen, [("east", T0 + timedelta(days=30))] * 2)

    def test_aLoginWithoutOutageTellsOnlyTheLicence(self) -> None:
        self.watch.authenticated({"licenseExpiresAt": "2026-12-29T12:00:00Z"})
        self.watch.authenticated({"licenseExpiresAt": ""})
        self.assertEqual(self.told, [])
        self.assertEqual(self.licenses.seen, [("east", T0 + timedelta(days=30))])


class ConnectionTellsItsWatchTests(StagingMixin, SynchronousTestCase):
    """The connection code calls the watch: refused attempts, refused logins, logins."""

    def setUp(self) -> None:
        self.setUpStaging()
        self.clock = self.harness.clock
        self.told: list[Any] = []

    def watched(self, secret: str = SECRET, **license: Any) -> LoopbackConnection:
        connection = LoopbackConnection(
            self.clock, Credentials(CLIENT_ID, secret, self.harness.license(**license)),
            self.harness.serverProtocol, keepaliveInterval=1e6, keepaliveTimeout=1e6,
            callTimeout=1e6)
        self.addCleanup(connection.stop)
        self.licenses = LicenseExpiryWatch(self.clock, self.told.append)
        connection.watch = ServerWatch(self.clock, "default", self.told.append, self.licenses)
        return connection

    def drive(self, deferred: Deferred[Any]) -> Any:
        results: list[Any] = []
        deferred.addBoth(results.append)
        for _ in range(100):
            if results:
                break
            self.clock.advance(0)
        self.assertEqual(len(results), 1)
        return results[0]

    def call(self, connection: LoopbackConnection) -> Any:
        return self.drive(Deferred.fromCoroutine(connection.call(Capabilities)))

    def test_unreachableThenReachableAndTheLicenceAtLogin(self) -> None:
        now = datetime.fromtimestamp(self.clock.seconds(), UTC)
        expiresAt = (now + timedelta(days=5)).replace(microsecond=0)
        connection = self.watched(expiresAt=expiresAt)
        connection.refusals = 2
        for _ in range(2):
            failure = self.call(connection)
            self.assertIsInstance(failure, Failure)
            self.clock.advance(30)
        self.assertEqual(self.told, [ServerUnreachable(
            "default", now, errors.CONNECTION_FAILED, "connection refused (twin)")])
        self.assertNotIsInstance(self.call(connection), Failure)
        self.assertEqual(self.told[1:], [LicenseExpiring("default", expiresAt, 5),
                                         ServerReachable("default")])
        # a new connection after a drop: a login again, no outage
        connection.cut()
        self.assertNotIsInstance(self.call(connection), Failure)
        self.assertEqual(len(self.told), 3, self.told)

    def test_aRefusedLoginIsAnOutage(self) -> None:
        connection = self.watched(secret="not-the-secret")
        failure = self.call(connection)
        self.assertEqual(failure.value.code, errors.AUTH_FAILED)
        [event] = self.told
        self.assertEqual((type(event), event.errorCode), (ServerUnreachable, errors.AUTH_FAILED))


class OutageToTheNotifierTests(SynchronousTestCase):
    """Every failed attempt of a 20-minute outage: one alert, then one recovery."""

    def test_oneAlertOneRecovery(self) -> None:
        clock = Clock()
        clock.advance(T0.timestamp())
        channel = MemoryNotificationChannel()
        notifier = Notifier(clock, [Route(channel, Rules(on=frozenset({"unreachable"})))],
                            unreachableAfter=900, recoveryAfter=600, digestAfter=0)
        watch = ServerWatch(clock, "east", notifier.notify)
        for _ in range(20):  # an attempt a minute
            watch.failed(BackupRemoteError(errors.CONNECTION_FAILED, "refused"))
            clock.advance(60)
        self.assertEqual([type(e) for e in channel.events], [ServerUnreachable])
        watch.authenticated({"licenseExpiresAt": ""})
        clock.advance(600)
        self.assertEqual([type(e) for e in channel.events], [ServerUnreachable, ServerReachable])
        self.assertEqual(channel.events[1].downSince, T0)

    def test_aShortOutageTellsNobody(self) -> None:
        clock = Clock()
        clock.advance(T0.timestamp())
        channel = MemoryNotificationChannel()
        notifier = Notifier(clock, [Route(channel, Rules(on=frozenset({"unreachable"})))],
                            unreachableAfter=900)
        watch = ServerWatch(clock, "east", notifier.notify)
        watch.failed(BackupRemoteError(errors.CONNECTION_FAILED, "refused"))
        clock.advance(120)
        watch.authenticated({})
        clock.advance(3600)
        self.assertEqual(channel.events, [])
