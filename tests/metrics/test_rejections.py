"""The CLI's schedule refusals, kept in the client store, reach the daemon's counter once each."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from backupremote.metrics.client import ClientMetrics


class RejectionsSeenTests(SynchronousTestCase):
    def value(self, metrics: ClientMetrics, op: str) -> float:
        return metrics.registry.get_sample_value(
            "backupremote_schedule_rejected_total", {"op": op}) or 0.0

    def test_eachRefusalCountedOnce(self) -> None:
        metrics = ClientMetrics(Clock(), CollectorRegistry())
        metrics.rejectionsSeen({"create": 2})
        metrics.rejectionsSeen({"create": 2, "update": 1})
        metrics.rejectionsSeen({"create": 5, "update": 1})
        self.assertEqual((self.value(metrics, "create"), self.value(metrics, "update")),
                         (5.0, 1.0))

    def test_aRestartedDaemonCountsWhatTheStoreHolds(self) -> None:
        metrics = ClientMetrics(Clock(), CollectorRegistry())
        metrics.rejectionsSeen({"update": 3})
        self.assertEqual(self.value(metrics, "update"), 3.0)


class FollowRejectionsTests(SynchronousTestCase):
    def test_daemonCarriesTheStoresCountsIntoItsMetrics(self) -> None:
        from twisted.application.service import MultiService

        from backupremote.client.schedules.store import ScheduleStore
        from backupremote.client.service import REJECTIONS_INTERVAL, followRejections
        from backupremote.testing import MemoryClientStore

        clock = Clock()
        schedules = ScheduleStore(MemoryClientStore())
        metrics = ClientMetrics(clock, CollectorRegistry())
        top = MultiService()
        followRejections(top, clock, schedules, metrics)
        top.startService()
        self.addCleanup(top.stopService)
        self.successResultOf(schedules.recordRejection("create"))  # by the CLI, meanwhile
        self.successResultOf(schedules.recordRejection("create"))
        clock.advance(REJECTIONS_INTERVAL)
        self.assertEqual(metrics.registry.get_sample_value(
            "backupremote_schedule_rejected_total", {"op": "create"}), 2.0)
