"""
The notifier on a Clock with in-memory channels: rules (global and per
schedule), the digest, and conditions that flap (one alert, one recovery).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from backupremote.client.notify import (
    DestinationCircuitClosed,
    DestinationCircuitOpened,
    INotificationChannel,
    LicenseExpiring,
    Notification,
    Notifier,
    Route,
    Rules,
    RunFailed,
    RunSucceeded,
    ScheduleMissed,
    ScheduleSkipped,
    ServerReachable,
    ServerUnreachable,
)
from backupremote.client.notify.notifier import DIGEST_LIMIT
from backupremote.protocol.errors import NOTIFICATION_FAILED, BackupRemoteError
from backupremote.testing import MemoryNotificationChannel

START = 1_800_000_000.0


def at(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.seconds(), timezone.utc)


def runFailed(schedule: str | None = "s1", name: str | None = None, n: int = 0) -> RunFailed:
    return RunFailed(f"run-{n}", schedule, "default", "shop", "DUMP_FAILED", "boom",
                     scheduleName=name)


def runSucceeded(schedule: str | None = "s1", name: str | None = None) -> RunSucceeded:
    return RunSucceeded("run-ok", schedule, "default", "shop", ("offsite",), 1234,
                        scheduleName=name)


class NotifierCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)

    def notifier(self, *routes: Route, **options: Any) -> Notifier:
        options.setdefault("digestAfter", 0)
        return Notifier(self.clock, routes, **options)


class RuleTests(NotifierCase):
    def test_defaultKinds(self) -> None:
        """Without C{on}: failures and missed slots, nothing else."""
        channel = MemoryNotificationChannel()
        notifier = self.notifier(Route(channel))
        now = at(self.clock)
        notifier.notify(runFailed())
        notifier.notify(runSucceeded())
        notifier.notify(ScheduleMissed("s1", now, "the client was down"))
        notifier.notify(ScheduleSkipped("s1", now, "the previous run is still active"))
        notifier.notify(LicenseExpiring("default", now + timedelta(days=7), 7))
        notifier.notify(DestinationCircuitOpened("offsite", "DESTINATION_UNREACHABLE", "down"))
        self.assertEqual([type(e).__name__ for e in channel.events],
                         ["RunFailed", "ScheduleMissed"])

    def test_perChannel(self) -> None:
        mail, hook = MemoryNotificationChannel("email"), MemoryNotificationChannel("webhook")
        notifier = self.notifier(Route(mail, Rules(on={"failure"})),
                                 Route(hook, Rules(on={"success", "skipped"})))
        notifier.notify(runFailed())
        notifier.notify(runSucceeded())
        notifier.notify(ScheduleSkipped("s1", at(self.clock), "busy"))
        self.assertEqual([type(e).__name__ for e in mail.events], ["RunFailed"])
        self.assertEqual([type(e).__name__ for e in hook.events],
                         ["RunSucceeded", "ScheduleSkipped"])

    def test_perSchedule(self) -> None:
        """A schedule's own list replaces C{on} for its events, by name or by id."""
        channel = MemoryNotificationChannel()
        rules = Rules(on={"failure"}, schedules={"nightly": {"success"}, "s3": set()})
        notifier = self.notifier(Route(channel, rules))
        notifier.notify(runFailed("s2", "nightly", 1))        # nightly: not failures
        notifier.notify(runSucceeded("s2", "nightly"))        # nightly: successes
        notifier.notify(runFailed("s3", None, 2))             # s3 (by id): nothing
        notifier.notify(runFailed("s4", "hourly", 3))         # the others: C{on}
        notifier.notify(runFailed(None, None, 4))             # no schedule: C{on}
        self.assertEqual([(type(e).__name__, getattr(e, "runId")) for e in channel.events],
                         [("RunSucceeded", "run-ok"), ("RunFailed", "run-3"),
                          ("RunFailed", "run-4")])

    def test_unknownKind(self) -> None:
        with self.assertRaises(ValueError):
            Rules(on={"failures"})
        with self.assertRaises(ValueError):
            Rules(schedules={"nightly": {"sucess"}})


class DigestTests(NotifierCase):
    def test_firstAtOnceThenDigest(self) -> None:
        channel = MemoryNotificationChannel()
        notifier = self.notifier(Route(channel, Rules(on={"failure"})), digestAfter=300)
        notifier.notify(runFailed(n=1))
        self.assertEqual(len(channel.sent), 1, "the first event is sent at once")
        self.clock.advance(10)
        for n in (2, 3, 4):
            notifier.notify(runFailed(n=n))
            self.clock.advance(10)
        self.assertEqual(len(channel.sent), 1)
        self.clock.advance(300 - 40 - 1)
        self.assertEqual(len(channel.sent), 1)
        self.clock.advance(1)
        self.assertEqual(len(channel.sent), 2)
        digest = channel.sent[1]
        self.assertEqual([e.runId for e in digest.events], ["run-2", "run-3", "run-4"])
        self.assertIn("3 notifications: 3 failed", digest.subject)
        # the digest starts a new quiet time: the next event waits for its end
        self.clock.advance(100)
        notifier.notify(runFailed(n=5))
        self.assertEqual(len(channel.sent), 2)
        self.clock.advance(200)
        self.assertEqual([e.runId for e in channel.sent[2].events], ["run-5"])
        # after a quiet time with nothing, the next event goes at once
        self.clock.advance(1000)
        notifier.notify(runFailed(n=6))
        self.assertEqual(len(channel.sent), 4)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_limit(self) -> None:
        """A storm is one message at once and one digest: the first DIGEST_LIMIT in full."""
        channel = MemoryNotificationChannel()
        notifier = self.notifier(Route(channel, Rules(on={"failure"})), digestAfter=300)
        for n in range(DIGEST_LIMIT + 50):
            notifier.notify(runFailed(n=n))
        self.clock.advance(300)
        self.assertEqual(len(channel.sent), 2)
        digest = channel.sent[1]
        self.assertEqual(len(digest.events), DIGEST_LIMIT)
        self.assertEqual(digest.omitted, 49)
        self.assertIn(f"{DIGEST_LIMIT + 49} notifications", digest.subject)
        self.assertIn("and 49 more", digest.text)

    def test_channelsDigestApart(self) -> None:
        quiet, busy = MemoryNotificationChannel("a"), MemoryNotificationChannel("b")
        notifier = self.notifier(Route(quiet, Rules(on={"missed"})),
                                 Route(busy, Rules(on={"failure", "missed"})),
                                 digestAfter=300)
        notifier.notify(runFailed())
        notifier.notify(ScheduleMissed("s1", at(self.clock), "down"))
        self.assertEqual((len(quiet.sent), len(busy.sent)), (1, 1))

    def test_stopSendsWhatIsHeld(self) -> None:
        channel = MemoryNotificationChannel()
        notifier = self.notifier(Route(channel, Rules(on={"failure"})), digestAfter=300)
        notifier.startService()
        notifier.notify(runFailed(n=1))
        notifier.notify(runFailed(n=2))
        self.successResultOf(notifier.stopService())
        self.assertEqual([[e.runId for e in n.events] for n in channel.sent],
                         [["run-1"], ["run-2"]])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopWaitsForSends(self) -> None:
        pending: Deferred[None] = Deferred()

        @implementer(INotificationChannel)
        class Slow:
            name = "slow"

            def send(self, notification: Notification) -> Deferred[None]:
                return pending

        notifier = self.notifier(Route(Slow()))
        notifier.startService()
        notifier.notify(runFailed())
        stopping = notifier.stopService()
        self.assertNoResult(stopping)
        pending.callback(None)
        self.successResultOf(stopping)


class FailureTests(NotifierCase):
    def test_failedSendIsLogged(self) -> None:
        """A channel that gives up is logged; the caller never sees it; later sends go on."""
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        channel = MemoryNotificationChannel("email")
        channel.failNext(BackupRemoteError(NOTIFICATION_FAILED, "the mail server said no"))
        notifier = self.notifier(Route(channel, Rules(on={"failure"})))
        notifier.notify(runFailed(n=1))
        notifier.notify(runFailed(n=2))
        self.assertEqual([e.runId for e in channel.events], ["run-2"])
        errors = [e for e in logged if e.get("log_level") is not None
                  and e["log_level"].name == "error"]
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["channel"], "email")
        self.assertIn("the mail server said no", errors[0]["error"])

    def test_notifyNeverRaises(self) -> None:
        channel = MemoryNotificationChannel()
        notifier = self.notifier(Route(channel))
        notifier.notify(object())  # type: ignore[arg-type]
        self.assertEqual(len(self.flushLoggedErrors(AttributeError)), 1)
        notifier.notify(runFailed())
        self.assertEqual(len(channel.sent), 1)

    def test_channelRaising(self) -> None:
        @implementer(INotificationChannel)
        class Broken:
            name = "broken"

            def send(self, notification: Notification) -> Deferred[None]:
                raise RuntimeError("bug")

        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        self.notifier(Route(Broken())).notify(runFailed())
        self.assertEqual([e["error"] for e in logged if e.get("channel") == "broken"], ["bug"])


class ConditionTests(NotifierCase):
    def setUp(self) -> None:
        super().setUp()
        self.channel = MemoryNotificationChannel()
        self.notifier_ = self.notifier(
            Route(self.channel, Rules(on={"circuit", "unreachable"})),
            unreachableAfter=900, recoveryAfter=600)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.channel.events]

    def test_flappingDestination(self) -> None:
        """Open, close, open, close... : one alert, then one recovery once it stays closed."""
        opened = at(self.clock)
        for _ in range(5):
            self.notifier_.notify(DestinationCircuitOpened("offsite", "DESTINATION_UNREACHABLE",
                                                           "connection refused"))
            self.clock.advance(60)
            self.notifier_.notify(DestinationCircuitClosed("offsite"))
            self.clock.advance(120)
        self.assertEqual(self.kinds(), ["DestinationCircuitOpened"])
        self.clock.advance(600 - 120)
        self.assertEqual(self.kinds(), ["DestinationCircuitOpened", "DestinationCircuitClosed"])
        recovery = self.channel.events[1]
        self.assertEqual((recovery.downSince, recovery.flaps), (opened, 4))
        self.assertIn("recovered and failed again 4 times", recovery.details())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # a later failure is a new alert
        self.notifier_.notify(DestinationCircuitOpened("offsite", "DESTINATION_FULL", "full"))
        self.assertEqual(len(self.channel.events), 3)

    def test_destinationsApart(self) -> None:
        self.notifier_.notify(DestinationCircuitOpened("a", "DESTINATION_FULL", "full"))
        self.notifier_.notify(DestinationCircuitOpened("b", "DESTINATION_FULL", "full"))
        self.notifier_.notify(DestinationCircuitOpened("a", "DESTINATION_FULL", "full"))
        self.assertEqual([e.destination for e in self.channel.events], ["a", "b"])

    def test_closedWithoutOpen(self) -> None:
        self.notifier_.notify(DestinationCircuitClosed("offsite"))
        self.clock.advance(3600)
        self.assertEqual(self.channel.events, [])

    def test_shortOutageTellsNobody(self) -> None:
        """A server back within unreachableAfter: nothing at all, however often."""
        for _ in range(10):
            self.notifier_.notify(ServerUnreachable("db1", at(self.clock), "CONNECTION_FAILED",
                                                    "refused"))
            self.clock.advance(890)
            self.notifier_.notify(ServerReachable("db1"))
            self.clock.advance(60)
        self.clock.advance(3600)
        self.assertEqual(self.channel.events, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_longOutage(self) -> None:
        """Unreachable for longer: one alert at the threshold, repeats ignored, one recovery."""
        since = at(self.clock)
        self.notifier_.notify(ServerUnreachable("db1", since, "CONNECTION_FAILED", "refused"))
        for _ in range(20):   # the connection reports every failed attempt
            self.clock.advance(60)
            self.notifier_.notify(ServerUnreachable("db1", at(self.clock),
                                                    "CONNECTION_FAILED", "refused"))
        self.assertEqual(self.kinds(), ["ServerUnreachable"])
        self.assertEqual(self.channel.events[0].since, since)
        self.notifier_.notify(ServerReachable("db1"))
        self.clock.advance(599)
        self.assertEqual(self.kinds(), ["ServerUnreachable"])
        self.clock.advance(1)
        self.assertEqual(self.kinds(), ["ServerUnreachable", "ServerReachable"])
        self.assertEqual(self.channel.events[1].downSince, since)

    def test_alertAtTheThreshold(self) -> None:
        self.notifier_.notify(ServerUnreachable("db1", at(self.clock), "TIMEOUT", "no answer"))
        self.clock.advance(899)
        self.assertEqual(self.channel.events, [])
        self.clock.advance(1)
        self.assertEqual(self.kinds(), ["ServerUnreachable"])

    def test_unreachableSinceLongAgo(self) -> None:
        """A producer that reports late (since an hour ago): the alert goes at once."""
        self.notifier_.notify(ServerUnreachable("db1", at(self.clock) - timedelta(hours=1),
                                                "CONNECTION_FAILED", "refused"))
        self.assertEqual(self.kinds(), ["ServerUnreachable"])

    def test_stopCancelsTimers(self) -> None:
        self.notifier_.startService()
        self.notifier_.notify(ServerUnreachable("db1", at(self.clock), "TIMEOUT", "x"))
        self.successResultOf(self.notifier_.stopService())
        self.assertEqual(self.clock.getDelayedCalls(), [])
