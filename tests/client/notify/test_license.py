"""
Licence-expiry warnings: the pure tier function, and the watch on a Clock
(30, 7 and 1 days before, and at the expiry; once each).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.notify import LicenseExpiring, LicenseExpiryWatch
from backupremote.client.notify.license import daysLeft, nextTierAt, warningTier

EXPIRY = datetime(2027, 3, 1, 12, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


class TierTests(SynchronousTestCase):
    def test_tiers(self) -> None:
        for left, tier in [(45 * DAY, None), (30 * DAY + timedelta(seconds=1), None),
                           (30 * DAY, 30), (29.5 * DAY, 30), (7 * DAY + timedelta(seconds=1), 30),
                           (7 * DAY, 7), (2 * DAY, 7), (DAY, 1), (timedelta(hours=3), 1),
                           (timedelta(0), 0), (-3 * DAY, 0)]:
            self.assertEqual(warningTier(EXPIRY, EXPIRY - left), tier, left)

    def test_otherThresholds(self) -> None:
        self.assertEqual(warningTier(EXPIRY, EXPIRY - 50 * DAY, (60, 14)), 60)
        self.assertEqual(warningTier(EXPIRY, EXPIRY - 10 * DAY, (60, 14)), 14)
        self.assertEqual(warningTier(EXPIRY, EXPIRY - 10 * DAY, (5,)), None)

    def test_nextTierAt(self) -> None:
        self.assertEqual(nextTierAt(EXPIRY, EXPIRY - 90 * DAY), EXPIRY - 30 * DAY)
        self.assertEqual(nextTierAt(EXPIRY, EXPIRY - 30 * DAY), EXPIRY - 7 * DAY)
        self.assertEqual(nextTierAt(EXPIRY, EXPIRY - 3 * DAY), EXPIRY - DAY)
        self.assertEqual(nextTierAt(EXPIRY, EXPIRY - timedelta(hours=1)), EXPIRY)
        self.assertIsNone(nextTierAt(EXPIRY, EXPIRY))

    def test_daysLeft(self) -> None:
        self.assertEqual(daysLeft(EXPIRY, EXPIRY - 30 * DAY), 30)
        self.assertEqual(daysLeft(EXPIRY, EXPIRY - 29.5 * DAY), 30)
        self.assertEqual(daysLeft(EXPIRY, EXPIRY - timedelta(hours=5)), 1)
        self.assertEqual(daysLeft(EXPIRY, EXPIRY), 0)
        self.assertEqual(daysLeft(EXPIRY, EXPIRY + DAY), 0)


class WatchTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[LicenseExpiring] = []
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.watch = LicenseExpiryWatch(self.clock, self.events.append)

    def setNow(self, when: datetime) -> None:
        self.clock.advance(when.timestamp() - self.clock.seconds())

    def advanceTo(self, when: datetime) -> None:
        """Advance as time passes: through every timer due on the way."""
        while True:
            due = [c.getTime() for c in self.clock.getDelayedCalls()]
            nextDue = min(due) if due else None
            if nextDue is None or nextDue > when.timestamp():
                break
            self.clock.advance(nextDue - self.clock.seconds())
        self.setNow(when)

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.logged if e.get("log_namespace") == "backupremote.client.notify"
                and e["log_level"].name == "warn"]

    def test_thirtySevenOneAndExpired(self) -> None:
        self.setNow(EXPIRY - 40 * DAY)
        self.watch.observe("default", EXPIRY)
        self.assertEqual(self.events, [])
        self.advanceTo(EXPIRY - 30 * DAY - timedelta(seconds=1))
        self.assertEqual(self.events, [])
        self.advanceTo(EXPIRY + 5 * DAY)
        self.assertEqual([(e.server, e.daysLeft, e.expiresAt) for e in self.events],
                         [("default", 30, EXPIRY), ("default", 7, EXPIRY),
                          ("default", 1, EXPIRY), ("default", 0, EXPIRY)])
        self.assertEqual(len(self.warnings()), 4)
        self.assertEqual(self.warnings()[1]["daysLeft"], 7)
        self.assertIn("expires in 7 days", self.warnings()[1]["text"])
        self.assertIn("license_file", self.warnings()[1]["text"])
        self.assertEqual(self.clock.getDelayedCalls(), [], "nothing more to watch")

    def test_startedInsideATier(self) -> None:
        """A daemon started 20 days before: told once now (21 days left, rounded up), next at 7."""
        self.setNow(EXPIRY - 20 * DAY - timedelta(hours=5))
        self.watch.observe("default", EXPIRY)
        self.assertEqual([e.daysLeft for e in self.events], [21])
        self.advanceTo(EXPIRY - 7 * DAY - timedelta(seconds=1))
        self.assertEqual(len(self.events), 1)
        self.advanceTo(EXPIRY - 7 * DAY)
        self.assertEqual([e.daysLeft for e in self.events], [21, 7])

    def test_sameExpiryAgain(self) -> None:
        """Each login reports the expiry: the same one changes nothing."""
        self.setNow(EXPIRY - 3 * DAY)
        for _ in range(5):
            self.watch.observe("default", EXPIRY)
        self.assertEqual([e.daysLeft for e in self.events], [3])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_renewed(self) -> None:
        self.setNow(EXPIRY - 3 * DAY)
        self.watch.observe("default", EXPIRY)
        self.watch.observe("default", EXPIRY + 365 * DAY)
        self.assertEqual([e.daysLeft for e in self.events], [3])
        self.advanceTo(EXPIRY + 335 * DAY)
        self.assertEqual([e.daysLeft for e in self.events], [3, 30])

    def test_serversApart(self) -> None:
        self.setNow(EXPIRY - 3 * DAY)
        self.watch.observe("a", EXPIRY)
        self.watch.observe("b", EXPIRY + 100 * DAY)
        self.assertEqual([(e.server, e.daysLeft) for e in self.events], [("a", 3)])

    def test_noExpiry(self) -> None:
        self.setNow(EXPIRY - 3 * DAY)
        self.watch.observe("default", EXPIRY)
        self.watch.observe("default", None)
        self.advanceTo(EXPIRY + DAY)
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_wallClockJump(self) -> None:
        """The watch looks again at least hourly: a clock moved forward is caught up."""
        self.setNow(EXPIRY - 40 * DAY)
        self.watch.observe("default", EXPIRY)
        [call] = self.clock.getDelayedCalls()
        self.assertLessEqual(call.getTime() - self.clock.seconds(), 3600)

    def test_stop(self) -> None:
        self.setNow(EXPIRY - 40 * DAY)
        self.watch.startService()
        self.watch.observe("default", EXPIRY)
        self.watch.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @settings(max_examples=60, deadline=None)
    @given(start=st.floats(0, 60), steps=st.lists(st.floats(0.01, 10), max_size=30))
    def test_eachTierOnce(self, start: float, steps: list[float]) -> None:
        """However time passes, each tier is told at most once, in order."""
        clock = Clock()
        events: list[LicenseExpiring] = []
        watch = LicenseExpiryWatch(clock, events.append)
        clock.advance((EXPIRY - start * DAY).timestamp())
        watch.observe("default", EXPIRY)
        for step in steps:
            clock.advance(step * 86400)
        tiers = [warningTier(EXPIRY, EXPIRY - e.daysLeft * DAY) for e in events]
        self.assertEqual(len(set(tiers)), len(tiers))
        days = [e.daysLeft for e in events]
        self.assertEqual(days, sorted(days, reverse=True))
        now = datetime.fromtimestamp(clock.seconds(), timezone.utc)
        if warningTier(EXPIRY, now) is not None:
            self.assertTrue(events, "the current tier was told")
