"""
L{Scheduler} on a C{Clock}: timers, misfires, overlaps, edits and restarts,
with the in-memory client store and a job runner that only records.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.schedules.model import Daily, Interval, Schedule
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.scheduler import (
    MAX_RECORDED_MISSED,
    RECONCILE_INTERVAL,
    RunRequest,
    Scheduler,
    dueAt,
    jitterDelay,
    runNowRequest,
)
from backupremote.client.schedules.store import (
    MISSED,
    QUEUED,
    SKIPPED,
    STARTED,
    FireRecord,
    ScheduleState,
    ScheduleStore,
)
from backupremote.protocol.options import BackupOptions
from backupremote.testing import MemoryClientStore

UTC = timezone.utc
T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
MINUTE = 60.0


class RecordingStarter:
    """A job runner that records what it is asked to start."""

    def __init__(self) -> None:
        self.requests: list[RunRequest] = []
        self.activeSchedules: set[str] = set()
        #: how many times the scheduler asked which schedules are busy
        self.busyAsked = 0
        self.failures: list[Exception] = []

    def start(self, request: RunRequest) -> Deferred[Any]:
        if self.failures:
            return fail(self.failures.pop(0))
        self.requests.append(request)
        return succeed(None)

    def busySchedules(self) -> Deferred[set[str]]:
        self.busyAsked += 1
        return succeed(set(self.activeSchedules))

    def fireTimes(self) -> list[datetime | None]:
        return [request.fireTime for request in self.requests]


def every(minutes: int, **kwargs: Any) -> Schedule:
    values: dict[str, Any] = dict(
        id="sched-1", name="often", rule=Interval(minutes, T0), zone="Europe/Berlin",
        database="db-1", server="default", destinations=("nas", "s3"),
        options=BackupOptions(compression="xz"))
    values.update(kwargs)
    return Schedule(**values)


class SchedulerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(T0.timestamp())
        self.store = MemoryClientStore()
        self.schedules = ScheduleStore(self.store)
        self.starter = RecordingStarter()
        self.scheduler = self.makeScheduler()

    def makeScheduler(self) -> Scheduler:
        return Scheduler(self.schedules, self.starter, self.clock)

    def add(self, schedule: Schedule) -> Schedule:
        return self.successResultOf(self.schedules.add(schedule, self.now()))

    def update(self, schedule: Schedule) -> Schedule:
        return self.successResultOf(self.schedules.update(schedule, self.now()))

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    def start(self) -> None:
        self.scheduler.startService()
        self.addCleanup(self.stop)

    def stop(self) -> None:
        if self.scheduler.running:
            self.successResultOf(self.scheduler.stopService())

    def state(self, scheduleId: str = "sched-1") -> ScheduleState:
        return self.successResultOf(self.schedules.states())[scheduleId]

    def records(self, scheduleId: str = "sched-1") -> list[FireRecord]:
        return list(reversed(self.successResultOf(self.schedules.fires(scheduleId, 1000))))

    def advanceTo(self, when: datetime) -> None:
        self.clock.advance(when.timestamp() - self.clock.seconds())

    def test_firesOnTime(self) -> None:
        """A callLater to the slot's absolute instant starts its run, with its runId."""
        sched = self.add(every(15))
        self.start()
        self.assertEqual(self.starter.requests, [])
        self.assertEqual(self.state().nextFire, T0 + timedelta(minutes=15))
        self.assertEqual(self.scheduler.timers(),
                         {sched.id: (T0 + timedelta(minutes=15)).timestamp()})
        self.clock.advance(15 * MINUTE - 1)
        self.assertEqual(self.starter.requests, [])
        self.clock.advance(1)
        slot = T0 + timedelta(minutes=15)
        self.assertEqual(self.starter.requests, [RunRequest(
            slotRunId(sched.id, slot), sched.id, "default", "db-1",
            BackupOptions(compression="xz"), ("nas", "s3"), slot)])
        self.assertEqual(self.state().nextFire, slot + timedelta(minutes=15))
        self.assertEqual(self.state().lastRunId, slotRunId(sched.id, slot))
        self.assertEqual([(r.fireTime, r.outcome) for r in self.records()], [(slot, STARTED)])

    def test_firesEverySlotOverADay(self) -> None:
        self.add(every(15, rule=Daily((time(3, 0), time(15, 0)))))
        self.start()
        for _ in range(3 * 24 * 60):
            self.clock.advance(MINUTE)
        local = [f.astimezone(timezone(timedelta(hours=1))).strftime("%d %H:%M")
                 for f in self.starter.fireTimes() if f]
        self.assertEqual(local, ["29 15:00", "30 03:00", "30 15:00", "01 03:00",
                                 "01 15:00", "02 03:00"])

    def test_clockJumpOfThreeHours(self) -> None:
        """
        Twelve 15-minute slots pass at once: one catch-up run for the latest,
        the slots within the hour of grace coalesced into it, the older ones
        missed; none fires twice.
        """
        sched = self.add(every(15))
        self.start()
        self.clock.advance(3 * 3600)
        latest = T0 + timedelta(hours=3)
        self.assertEqual(self.starter.fireTimes(), [latest])
        outcomes = [(r.fireTime, r.outcome) for r in self.records()]
        self.assertEqual(outcomes, [(T0 + timedelta(minutes=15 * k),
                                     STARTED if k == 12 else MISSED) for k in range(1, 13)])
        details = [r.detail for r in self.records()]
        # 2 h 00 and after (the grace includes its end): coalesced
        self.assertEqual(sum("coalesced" in (d or "") for d in details), 4)
        self.assertEqual(sum("beyond the misfire grace" in (d or "") for d in details), 7)
        self.assertEqual(self.state().nextFire, latest + timedelta(minutes=15))
        self.clock.advance(RECONCILE_INTERVAL * 4)
        self.assertEqual(len(self.starter.requests), 1)

    def test_restartCatchesUpOnce(self) -> None:
        """Down for 2 h: after a restart, one catch-up; the persisted next fire is the start."""
        self.add(every(30, misfireGraceSeconds=3600))
        self.start()
        self.clock.advance(30 * MINUTE)
        self.assertEqual(len(self.starter.requests), 1)
        self.stop()
        self.clock.advance(2 * 3600 + 5 * MINUTE)
        self.scheduler = self.makeScheduler()  # a new daemon over the same store
        self.start()
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=30),
                                                    T0 + timedelta(hours=2, minutes=30)])
        outcomes = [r.outcome for r in self.records()]
        self.assertEqual(outcomes, [STARTED, MISSED, MISSED, MISSED, STARTED])

    def test_downBeyondTheGraceOnlyMisses(self) -> None:
        self.add(every(60 * 24, misfireGraceSeconds=600))
        self.start()
        self.stop()
        self.clock.advance(24 * 3600 + 11 * MINUTE)
        self.scheduler = self.makeScheduler()
        self.start()
        self.assertEqual(self.starter.requests, [])
        self.assertEqual([r.outcome for r in self.records()], [MISSED])

    def test_longSleepIsBounded(self) -> None:
        """A week asleep with a 1-minute schedule: a bounded record, one run."""
        self.add(every(1))
        self.start()
        self.stop()
        self.clock.advance(7 * 86400)
        self.scheduler = self.makeScheduler()
        self.start()
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(days=7)])
        records = self.records()
        self.assertLessEqual(len(records), MAX_RECORDED_MISSED + 61)
        self.assertEqual(records[-1].outcome, STARTED)

    def test_overlapSkips(self) -> None:
        sched = self.add(every(15))
        self.start()
        self.starter.activeSchedules.add(sched.id)
        self.clock.advance(15 * MINUTE)
        self.assertEqual(self.starter.requests, [])
        (record,) = self.records()
        self.assertEqual((record.outcome, record.runId),
                         (SKIPPED, slotRunId(sched.id, T0 + timedelta(minutes=15))))
        self.starter.activeSchedules.clear()
        self.clock.advance(15 * MINUTE)
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=30)])

    def test_overlapQueuesOne(self) -> None:
        sched = self.add(every(15, overlap="queue"))
        self.start()
        self.starter.activeSchedules.add(sched.id)
        self.clock.advance(15 * MINUTE)
        self.clock.advance(15 * MINUTE)
        self.assertEqual(self.starter.requests, [])
        self.assertEqual([r.outcome for r in self.records()], [QUEUED, SKIPPED])
        self.assertEqual(self.state().queuedFire, T0 + timedelta(minutes=15))
        self.starter.activeSchedules.clear()
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=15)])
        self.assertEqual([r.outcome for r in self.records()], [STARTED, SKIPPED])
        self.assertIsNone(self.state().queuedFire)

    def test_queuedStartsAndTheDueSlotWaitsBehindIt(self) -> None:
        """
        In one pass, the queued slot is started (its blocker ended) and the
        slot due now finds the schedule busy with it: queued in its turn.
        """
        sched = self.add(every(15, overlap="queue"))
        self.start()
        self.starter.activeSchedules.add(sched.id)
        self.clock.advance(15 * MINUTE)
        self.starter.activeSchedules.clear()
        self.clock.advance(15 * MINUTE)
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=15)])
        self.assertEqual([(r.fireTime, r.outcome) for r in self.records()],
                         [(T0 + timedelta(minutes=15), STARTED),
                          (T0 + timedelta(minutes=30), QUEUED)])
        self.assertEqual(self.state().queuedFire, T0 + timedelta(minutes=30))

    def test_manyDueAtOnceAskWhichAreBusyOnce(self) -> None:
        """
        Schedules due in the same pass are started from one look at which
        schedules are busy (not one store round trip each before its job).
        """
        for n in range(20):
            self.add(every(15, id=f"sched-{n}", name=f"often-{n}"))
        self.start()
        asked = self.starter.busyAsked
        self.clock.advance(15 * MINUTE)
        self.assertEqual(len(self.starter.requests), 20)
        self.assertEqual(self.starter.busyAsked - asked, 1)

    def test_aPassAsksItsReadsTogether(self) -> None:
        """
        A pass asks for the schedules, their states and the busy ones at
        once (one batch of the store), not each after the answer of the other.
        """
        self.add(every(15))
        states = self.schedules.states
        asked: list[str] = []
        answers: list[tuple[Deferred[Any], Any]] = []
        for name in ("list", "states"):
            def holding(name: str = name, original: Any = getattr(self.schedules, name)
                        ) -> Deferred[Any]:
                asked.append(name)
                held: Deferred[Any] = Deferred()
                answers.append((held, original))
                return held

            self.patch(self.schedules, name, holding)
        busy = self.starter.busySchedules
        self.patch(self.starter, "busySchedules", lambda: (asked.append("busy"), busy())[1])
        passed = self.scheduler.kick()
        self.assertEqual(asked, ["list", "states", "busy"])
        for held, original in answers:
            original().chainDeferred(held)
        self.successResultOf(passed)
        self.assertEqual(self.successResultOf(states())["sched-1"].nextFire,
                         T0 + timedelta(minutes=15))

    def test_disabledDoesNotFireAndDoesNotCatchUp(self) -> None:
        sched = self.add(every(15))
        self.start()
        sched = self.update(every(15, enabled=False))
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.scheduler.timers(), {})
        self.clock.advance(2 * 3600)
        self.assertEqual(self.starter.requests, [])
        self.update(every(15, enabled=True, revision=sched.revision))
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.starter.requests, [])  # nothing of the disabled time
        self.assertEqual(self.records(), [])
        self.clock.advance(15 * MINUTE)
        self.assertEqual(len(self.starter.requests), 1)

    def test_editRecomputesFromNow(self) -> None:
        sched = self.add(every(60))
        self.start()
        self.update(every(60, rule=Interval(5, T0), revision=sched.revision))
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.state().nextFire, T0 + timedelta(minutes=5))
        self.assertEqual(self.state().revision, 2)
        self.clock.advance(5 * MINUTE)
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=5)])

    def test_removedScheduleLosesItsTimer(self) -> None:
        self.add(every(15))
        self.start()
        self.successResultOf(self.schedules.remove("often"))
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.scheduler.timers(), {})
        self.clock.advance(3600)
        self.assertEqual(self.starter.requests, [])

    def test_startFailureIsRetriedWithinTheGrace(self) -> None:
        sched = self.add(every(60))
        self.start()
        self.starter.failures.append(RuntimeError("disk full"))
        self.clock.advance(60 * MINUTE)
        self.assertEqual(self.starter.requests, [])
        self.assertEqual(self.state().nextFire, T0 + timedelta(minutes=60))
        self.clock.advance(RECONCILE_INTERVAL)
        self.assertEqual(self.starter.fireTimes(), [T0 + timedelta(minutes=60)])
        self.assertEqual(self.starter.requests[0].runId,
                         slotRunId(sched.id, T0 + timedelta(minutes=60)))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_crashBetweenStartAndSaveFiresTheSameRunId(self) -> None:
        """The run is started before the state is written: a re-fire has the same runId."""
        self.add(every(60))
        self.start()
        save = self.schedules.save
        broken = [True]

        def crashingSave(*args: Any) -> Deferred[bool]:
            if broken and args[1]:
                broken.clear()
                return fail(RuntimeError("killed"))
            return save(*args)

        self.patch(self.schedules, "save", crashingSave)
        self.clock.advance(60 * MINUTE)
        self.clock.advance(RECONCILE_INTERVAL)
        runIds = [request.runId for request in self.starter.requests]
        self.assertEqual(len(runIds), 2)
        self.assertEqual(len(set(runIds)), 1)
        self.assertEqual([r.outcome for r in self.records()], [STARTED])
        self.flushLoggedErrors(RuntimeError)

    def test_jitterDelaysTheStartNotTheRunId(self) -> None:
        sched = self.add(every(60, jitterSeconds=600))
        slot = T0 + timedelta(minutes=60)
        delay = jitterDelay(sched, slot)
        self.assertEqual(delay, jitterDelay(sched, slot))
        self.assertTrue(timedelta(0) <= delay <= timedelta(seconds=600))
        delays = {jitterDelay(sched, slot + timedelta(hours=k)) for k in range(20)}
        self.assertGreater(len(delays), 10)
        self.start()
        self.assertEqual(self.scheduler.timers(), {sched.id: dueAt(sched, slot).timestamp()})
        self.advanceTo(dueAt(sched, slot) - timedelta(seconds=1))
        self.assertEqual(self.starter.requests, [])
        self.clock.advance(1)
        self.assertEqual(self.starter.requests[0].runId, slotRunId(sched.id, slot))

    def test_severalSchedulesOneTimerEach(self) -> None:
        for index in range(20):
            self.add(every(5 + index, id=f"s{index}", name=f"n{index}"))
        self.start()
        self.assertEqual(len(self.scheduler.timers()), 20)
        self.clock.advance(24 * MINUTE)
        self.assertEqual(sorted(r.scheduleId for r in self.starter.requests),
                         sorted(f"s{i}" for i in range(20)))

    def test_runNowHasAFreshRunId(self) -> None:
        sched = every(15)
        first, second = runNowRequest(sched), runNowRequest(sched)
        self.assertNotEqual(first.runId, second.runId)
        self.assertIsNone(first.fireTime)
        self.assertEqual((first.scheduleId, first.destinations), (sched.id, ("nas", "s3")))
        self.assertEqual(runNowRequest(sched, "given").runId, "given")
