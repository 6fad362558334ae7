"""
The scheduler tells the metrics each schedule's next slot, by name: after
each pass, none once disabled or removed, the new name once renamed; read
back from a real L{ClientMetrics} registry, on a Clock.
"""

from __future__ import annotations

from datetime import timedelta

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.schedules.scheduler import Scheduler
from backupremote.metrics.client import ClientMetrics
from tests.client.schedules import test_scheduler
from tests.client.schedules.test_scheduler import MINUTE, T0, every

GAUGE = "backupremote_schedule_next_fire_timestamp_seconds"


class NextFireMetricsTests(SynchronousTestCase):
    add = test_scheduler.SchedulerTests.add
    update = test_scheduler.SchedulerTests.update
    now = test_scheduler.SchedulerTests.now
    start = test_scheduler.SchedulerTests.start
    stop = test_scheduler.SchedulerTests.stop

    def setUp(self) -> None:
        test_scheduler.SchedulerTests.setUp(self)  # type: ignore[arg-type]

    def makeScheduler(self) -> Scheduler:
        self.metrics = ClientMetrics(self.clock)
        return Scheduler(self.schedules, self.starter, self.clock, nextFires=self.metrics)

    def nextFire(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(GAUGE, {"schedule": name})

    def test_nextFireFollowsTheSchedule(self) -> None:
        sched = self.add(every(15))
        self.start()
        self.assertEqual(self.nextFire("often"), (T0 + timedelta(minutes=15)).timestamp())
        self.clock.advance(15 * MINUTE)
        self.assertEqual(self.nextFire("often"), (T0 + timedelta(minutes=30)).timestamp())
        # renamed: the old name's series goes
        sched = self.update(evolve(sched, name="renamed"))
        self.successResultOf(self.scheduler.kick())
        self.assertIsNone(self.nextFire("often"))
        self.assertEqual(self.nextFire("renamed"), (T0 + timedelta(minutes=30)).timestamp())
        # disabled: no next slot
        sched = self.update(evolve(sched, enabled=False))
        self.successResultOf(self.scheduler.kick())
        self.assertIsNone(self.nextFire("renamed"))
        # enabled again, then removed
        sched = self.update(evolve(sched, enabled=True))
        self.successResultOf(self.scheduler.kick())
        self.assertIsNotNone(self.nextFire("renamed"))
        self.successResultOf(self.schedules.remove(sched.id))
        self.successResultOf(self.scheduler.kick())
        self.assertIsNone(self.nextFire("renamed"))
