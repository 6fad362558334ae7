"""
The scheduler: fires each enabled schedule's slots through the job runner.

One pass (L{Scheduler.kick}) reads the schedules and their persisted states
and, for each schedule:

  1. if it is new or changed (another revision), computes its next slot
     from now (the time before an edit is never caught up);
  2. collects the slots that are due: those late by more than the
     schedule's misfire grace are recorded MISSED; those within it are
     coalesced into one catch-up run for the latest of them (the others are
     recorded MISSED, "coalesced");
  3. starts that run, unless the schedule's previous run is still active:
     then the slot is recorded SKIPPED, or with the C{queue} policy kept as
     the one queued slot, started by a later pass once the active run ends;
  4. persists the next slot, and arms a C{callLater} to the absolute
     instant it is due (plus the slot's jitter); C{nextFires} (the
     daemon's metrics) is told it, by the schedule's name.

Runs are started before the state is written: a crash in between fires the
slot again after a restart, with the same runId, which the runner and the
server take as the same run. Besides the timers, a C{LoopingCall} makes a
pass every L{RECONCILE_INTERVAL} seconds: it catches wall-clock jumps, a
machine resumed from suspend (whose timers are late), edits made by the CLI
in the store, and queued slots whose blocker ended.

Time comes from the injected C{IReactorTime}; nothing here sleeps.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from attrs import evolve, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, FirstError, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.client.notify.events import ScheduleMissed, ScheduleSkipped
from backupremote.client.notify.notifier import EventSink
from backupremote.client.schedules.model import Schedule
from backupremote.client.schedules.nextfire import nextFire
from backupremote.client.schedules.runids import slotRunId
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

UTC = timezone.utc
#: Seconds between two reconciliation passes (the design's 30-60 s).
RECONCILE_INTERVAL = 30.0
#: Missed slots recorded one by one in a pass; past that, one log line.
MAX_RECORDED_MISSED = 100

_log = Logger(namespace="backupremote.client.schedules")


@frozen
class RunRequest:
    """
    A run the scheduler (or C{schedule run-now}) asks the job runner for.

    @ivar fireTime: the slot, C{None} for a run started by hand.
    """

    runId: str
    scheduleId: str
    server: str
    databaseConfigId: str
    options: BackupOptions | None
    destinations: tuple[str, ...]
    fireTime: datetime | None = None


class NextFires(Protocol):
    """Told each schedule's next slot (L{backupremote.metrics.ClientMetrics} is one)."""

    def nextFire(self, schedule: str, when: datetime | None) -> None:
        """C{schedule} (its name) fires next at C{when} (C{None}: not any more)."""


class JobStarter(Protocol):
    """What the scheduler needs of the job runner."""

    def start(self, request: RunRequest) -> Deferred[Any]:
        """
        Record the run and set it going; fires once it is recorded. The
        same runId twice is the same run (never a second backup).
        """

    def busySchedules(self) -> Deferred[set[str]]:
        """
        The schedules with a run recorded that has not ended: asked once
        per pass (one query, not one per due schedule, so the due slots'
        jobs are all asked for in the same turn and recorded together).
        """


def slotRequest(schedule: Schedule, fireTime: datetime) -> RunRequest:
    """The run of one slot of C{schedule}: its runId is the slot's."""
    return RunRequest(slotRunId(schedule.id, fireTime), schedule.id, schedule.server,
                      schedule.database, schedule.options, schedule.destinations,
                      fireTime.astimezone(UTC))


def runNowRequest(schedule: Schedule, runId: str | None = None) -> RunRequest:
    """A run of C{schedule} now, outside its slots, with a fresh runId."""
    return RunRequest(runId or str(uuid.uuid4()), schedule.id, schedule.server,
                      schedule.database, schedule.options, schedule.destinations)


def jitterDelay(schedule: Schedule, fireTime: datetime) -> timedelta:
    """The slot's delay, 0..jitterSeconds, the same for the slot every time."""
    if schedule.jitterSeconds <= 0:
        return timedelta(0)
    digest = hashlib.sha256(
        f"{schedule.id}:{fireTime.astimezone(UTC).isoformat()}".encode()).digest()
    return timedelta(seconds=int.from_bytes(digest[:8], "big") % (schedule.jitterSeconds + 1))


def dueAt(schedule: Schedule, fireTime: datetime) -> datetime:
    """When the slot C{fireTime} is started: the slot plus its jitter."""
    return fireTime + jitterDelay(schedule, fireTime)


@frozen
class DueSlots:
    """The slots of one schedule found due in a pass."""

    missed: list[datetime]
    inGrace: list[datetime]
    following: datetime | None
    moreMissed: bool = False


def dueSlots(schedule: Schedule, first: datetime | None, now: datetime) -> DueSlots:
    """
    From C{first} on, the slots due by C{now}: missed (late beyond the
    grace) and within the grace, and the first slot not yet due.
    """
    grace = timedelta(seconds=schedule.misfireGraceSeconds)
    missed: list[datetime] = []
    inGrace: list[datetime] = []
    more = False
    slot = first
    while slot is not None:
        due = dueAt(schedule, slot)
        if due > now:
            break
        if now - due <= grace:
            inGrace.append(slot)
        elif len(missed) < MAX_RECORDED_MISSED:
            missed.append(slot)
        else:
            # a long sleep: jump over the slots that are surely missed
            more = True
            surelyMissed = now - grace - timedelta(seconds=schedule.jitterSeconds + 1)
            slot = nextFire(schedule, max(slot, surelyMissed))
            continue
        slot = nextFire(schedule, slot)
    return DueSlots(missed, inGrace, slot, more)


class Scheduler(Service):
    """Fires the schedules of a L{ScheduleStore} through a L{JobStarter}."""

    def __init__(self, schedules: ScheduleStore, starter: JobStarter, clock: IReactorTime,
                 reconcileInterval: float = RECONCILE_INTERVAL,
                 notify: EventSink | None = None, nextFires: NextFires | None = None) -> None:
        self._schedules = schedules
        #: told each schedule's next slot after each pass (the daemon's metrics)
        self._nextFires = nextFires
        #: schedule id -> the name its next slot was told under
        self._told: dict[str, str] = {}
        #: told of each slot recorded missed or skipped (the daemon's notifier)
        self._notify = notify
        self._starter = starter
        self._clock = clock
        self._interval = reconcileInterval
        self._loop: LoopingCall | None = None
        self._timers: dict[str, IDelayedCall] = {}
        self._busy = False
        self._again = False
        self._waiters: list[Deferred[None]] = []

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.seconds(), UTC)

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.kick)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True)

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        if not self._busy:
            return succeed(None)
        ending: Deferred[None] = Deferred()
        self._waiters.append(ending)
        return ending

    def kick(self) -> Deferred[None]:
        """
        Make a pass now; if one is under way, one more right after it. The
        Deferred fires when the passes end, and never fails.
        """
        if self._busy:
            self._again = True
            following: Deferred[None] = Deferred()
            self._waiters.append(following)
            return following
        self._busy = True
        return Deferred.fromCoroutine(self._passes())

    async def _passes(self) -> None:
        try:
            while True:
                self._again = False
                try:
                    await self.reconcile()
                except Exception:
                    _log.failure("a scheduler pass failed; the next one retries")
                if not self._again or not self.running:
                    break
        finally:
            self._busy = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)

    async def reconcile(self) -> None:
        """One pass over every schedule (see the module's docstring)."""
        now = self.now()
        # asked together: the store reads them in one batch, not three round trips
        asked: list[Deferred[Any]] = [self._schedules.list(), self._schedules.states(),
                                      self._starter.busySchedules()]
        try:
            answers = await gatherResults(asked, consumeErrors=True)
        except FirstError as error:
            error.subFailure.raiseException()
        schedules: list[Schedule] = answers[0]
        states: dict[str, ScheduleState] = answers[1]
        busy: set[str] = answers[2]

        async def handle(schedule: Schedule) -> None:
            try:
                await self._handle(schedule, states.get(schedule.id), now, busy)
            except Exception:
                _log.failure("schedule {scheduleId}: this pass failed; the next one retries",
                             scheduleId=schedule.id)

        # every schedule at once: the store commits what they ask for together, so
        # 200 schedules due in the same minute start together instead of one by one
        await gatherResults([Deferred.fromCoroutine(handle(s)) for s in schedules])
        known = {schedule.id for schedule in schedules}
        for scheduleId in list(self._timers):
            if scheduleId not in known:
                self._disarm(scheduleId)
        for scheduleId in [k for k in self._told if k not in known]:
            self._tellNext(scheduleId, None, None)

    async def _handle(self, schedule: Schedule, state: ScheduleState | None,
                      now: datetime, busy: set[str]) -> None:
        """One schedule in a pass; C{busy}: the schedules with a run active (updated here)."""
        records: list[FireRecord] = []
        if state is None or state.revision != schedule.revision:
            state = self._fresh(schedule, state, now, records)
            if not await self._schedules.save(state, records, now):
                return  # edited again meanwhile: the next pass sees it
            self._tell(schedule, records)
            records = []
        original = state
        if not schedule.enabled:
            self._disarm(schedule.id)
            self._tellNext(schedule.id, schedule.name, None)
            return
        found = dueSlots(schedule, state.nextFire, now)
        following = found.following
        for slot in found.missed:
            late = now - dueAt(schedule, slot)
            records.append(self._record(schedule, slot, MISSED,
                                        f"due {_span(late)} ago, beyond the misfire grace of "
                                        f"{_span(timedelta(seconds=schedule.misfireGraceSeconds))}"
                                        ))
        if found.missed or found.moreMissed:
            _log.warn("schedule {scheduleId}: {count}{more} slots missed (the client was "
                      "down, asleep or its clock jumped)", scheduleId=schedule.id,
                      count=len(found.missed), more=" or more" if found.moreMissed else "")
        catchUp = found.inGrace[-1] if found.inGrace else None
        for slot in found.inGrace[:-1]:
            records.append(self._record(schedule, slot, MISSED,
                                        f"coalesced into the run of {_iso(catchUp)}"))
        queued = state.queuedFire
        lastFire, lastRunId = state.lastFire, state.lastRunId
        if queued is not None and schedule.id not in busy:
            if await self._start(schedule, queued, records, "queued behind the previous run"):
                lastFire, lastRunId, queued = queued, slotRunId(schedule.id, queued), None
                busy.add(schedule.id)
        if catchUp is not None:
            if queued is None and schedule.id not in busy:
                late = now - dueAt(schedule, catchUp)
                why = None if late < timedelta(seconds=self._interval) else (
                    f"catch-up, {_span(late)} late")
                if await self._start(schedule, catchUp, records, why):
                    lastFire, lastRunId = catchUp, slotRunId(schedule.id, catchUp)
                    busy.add(schedule.id)
                else:
                    # retried by the reconciliation loop (not a timer: no busy
                    # loop while the runner fails), as long as the grace lasts
                    following = catchUp
            elif schedule.overlap == "queue" and queued is None:
                queued = catchUp
                records.append(self._record(schedule, catchUp, QUEUED,
                                            "the previous run is still active"))
            else:
                records.append(self._record(schedule, catchUp, SKIPPED, (
                    "the previous run is still active" if queued is None else
                    f"the previous run is still active and {_iso(queued)} is queued")))
                _log.info("schedule {scheduleId}: slot {fireTime} skipped, the previous run "
                          "is still active", scheduleId=schedule.id, fireTime=_iso(catchUp))
        state = evolve(state, nextFire=following, queuedFire=queued, lastFire=lastFire,
                       lastRunId=lastRunId)
        if (records or state != original) and not await self._schedules.save(
                state, records, now):
            return
        self._tell(schedule, records)
        self._tellNext(schedule.id, schedule.name, state.nextFire)
        if state.nextFire is not None and dueAt(schedule, state.nextFire) <= now:
            self._disarm(schedule.id)
        else:
            self._arm(schedule, state.nextFire)

    def _fresh(self, schedule: Schedule, old: ScheduleState | None, now: datetime,
               records: list[FireRecord]) -> ScheduleState:
        """The state of a new or changed schedule: its next slot from now."""
        queued = old.queuedFire if old is not None else None
        if queued is not None and not schedule.enabled:
            records.append(self._record(schedule, queued, SKIPPED,
                                        "the schedule was disabled while the slot was queued"))
            queued = None
        return ScheduleState(
            schedule.id, schedule.revision,
            nextFire(schedule, now) if schedule.enabled else None, queued,
            old.lastFire if old is not None else None,
            old.lastRunId if old is not None else None)

    async def _start(self, schedule: Schedule, slot: datetime, records: list[FireRecord],
                     why: str | None) -> bool:
        request = slotRequest(schedule, slot)
        try:
            await self._starter.start(request)
        except Exception as error:
            _log.failure("schedule {scheduleId}: cannot start run {runId} of {fireTime}: "
                         "{error}", scheduleId=schedule.id, runId=request.runId,
                         fireTime=_iso(slot), error=str(error))
            return False
        _log.info("schedule {scheduleId}: run {runId} of {fireTime} started",
                  scheduleId=schedule.id, runId=request.runId, fireTime=_iso(slot))
        records.append(self._record(schedule, slot, STARTED, why))
        return True

    def _tell(self, schedule: Schedule, records: list[FireRecord]) -> None:
        """Tell the notifier of the slots just recorded missed or skipped."""
        if self._notify is None:
            return
        for record in records:
            if record.outcome in (MISSED, SKIPPED):
                kind = ScheduleMissed if record.outcome == MISSED else ScheduleSkipped
                self._notify(kind(schedule.id, record.fireTime, record.detail or record.outcome,
                                  schedule.name))

    def _tellNext(self, scheduleId: str, name: str | None, slot: datetime | None) -> None:
        """Tell C{nextFires} a schedule's next slot (C{None}: none; a renamed one's old name goes)."""
        if self._nextFires is None:
            return
        old = self._told.get(scheduleId)
        if old is not None and old != name:
            self._nextFires.nextFire(old, None)
        if name is None or slot is None:
            self._told.pop(scheduleId, None)
            if name is not None and old == name:
                self._nextFires.nextFire(name, None)
            return
        self._told[scheduleId] = name
        self._nextFires.nextFire(name, slot)

    def _record(self, schedule: Schedule, slot: datetime, outcome: str,
                detail: str | None) -> FireRecord:
        return FireRecord(schedule.id, slot, slotRunId(schedule.id, slot), outcome, detail,
                          self.now())

    def _arm(self, schedule: Schedule, slot: datetime | None) -> None:
        """A timer to the absolute instant C{slot} is due, replacing any other."""
        if slot is None or not self.running:
            self._disarm(schedule.id)
            return
        due = dueAt(schedule, slot).timestamp()
        timer = self._timers.get(schedule.id)
        if timer is not None and timer.active() and abs(timer.getTime() - due) < 1e-3:
            return
        self._disarm(schedule.id)
        self._timers[schedule.id] = self._clock.callLater(
            max(0.0, due - self._clock.seconds()), self._timerFired, schedule.id, due)

    def _timerFired(self, scheduleId: str, due: float) -> None:
        self._timers.pop(scheduleId, None)
        self.kick()

    def _disarm(self, scheduleId: str) -> None:
        timer = self._timers.pop(scheduleId, None)
        if timer is not None and timer.active():
            timer.cancel()

    def timers(self) -> dict[str, float]:
        """The armed timers: schedule id -> when (seconds since the epoch)."""
        return {key: timer.getTime() for key, timer in self._timers.items() if timer.active()}


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else "-"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
