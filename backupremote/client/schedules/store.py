"""
The schedules in the client's store (tables of migration 2).

L{ScheduleStore} is typed access over any L{IClientStore}: the SQLite one
of the daemon and the CLI, or L{backupremote.testing.MemoryClientStore} in
tests (one contract test runs on both). Each method is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Sequence

from attrs import evolve, frozen
from twisted.internet.defer import Deferred

from backupremote.client.schedules.model import Schedule, scheduleConverter
from backupremote.client.schedules.validation import validateSchedule
from backupremote.client.store import IClientStore
from backupremote.client.store.instants import instantOf, storedInstant
from backupremote.protocol.errors import CONFLICT, NOT_FOUND, BackupRemoteError

#: What became of a slot.
STARTED = "started"
MISSED = "missed"
SKIPPED = "skipped"
QUEUED = "queued"
OUTCOMES = (STARTED, MISSED, SKIPPED, QUEUED)


@frozen
class ScheduleState:
    """
    The scheduler's memory of one schedule.

    @ivar revision: the schedule's revision C{nextFire} was computed for
        (another one means the schedule changed: compute again from now).
    @ivar nextFire: the first slot not handled yet; C{None}: none (disabled,
        or past its end).
    @ivar queuedFire: a slot waiting for the schedule's active run to end
        (overlap policy C{queue}).
    """

    scheduleId: str
    revision: int
    nextFire: datetime | None = None
    queuedFire: datetime | None = None
    lastFire: datetime | None = None
    lastRunId: str | None = None


@frozen
class FireRecord:
    """What became of one slot: L{OUTCOMES}, and why in C{detail}."""

    scheduleId: str
    fireTime: datetime
    runId: str
    outcome: str
    detail: str | None = None
    recordedAt: datetime | None = None


class ScheduleStore:
    """The schedules, their states and their slots' records."""

    def __init__(self, store: IClientStore) -> None:
        self._store = store

    @property
    def clientStore(self) -> IClientStore:
        """The client's store these schedules live in (its jobs live there too)."""
        return self._store

    # -- the schedules

    def add(self, schedule: Schedule, now: datetime) -> Deferred[Schedule]:
        """Store a new schedule (revision 1); C{CONFLICT} if its name or id is taken."""
        schedule = evolve(schedule, revision=1)

        def work(db: sqlite3.Connection) -> Schedule:
            validateSchedule(schedule)
            _refuseTakenName(db, schedule.name, None)
            if db.execute("SELECT 1 FROM schedules WHERE id = ?", (schedule.id,)).fetchone():
                raise BackupRemoteError(CONFLICT, f"a schedule has the id {schedule.id}")
            db.execute(
                "INSERT INTO schedules (id, name, revision, definition, createdAt, updatedAt) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (schedule.id, schedule.name, 1, _definition(schedule), storedInstant(now),
                 storedInstant(now)))
            return schedule

        return self._store.transact(work)

    def update(self, schedule: Schedule, now: datetime) -> Deferred[Schedule]:
        """
        Replace the stored schedule of C{schedule.id}, whose revision must
        still be C{schedule.revision} (else C{CONFLICT}); the stored one
        gets the next revision, and is returned.
        """
        changed = evolve(schedule, revision=schedule.revision + 1)

        def work(db: sqlite3.Connection) -> Schedule:
            validateSchedule(changed)
            row = db.execute("SELECT revision FROM schedules WHERE id = ?",
                             (schedule.id,)).fetchone()
            if row is None:
                raise _notFound(schedule.id)
            if row[0] != schedule.revision:
                raise BackupRemoteError(CONFLICT, (
                    f"schedule {schedule.name} changed since it was read (revision {row[0]}, "
                    f"not {schedule.revision}); show it again and retry"))
            _refuseTakenName(db, changed.name, changed.id)
            db.execute("UPDATE schedules SET name = ?, revision = ?, definition = ?, "
                       "updatedAt = ? WHERE id = ?",
                       (changed.name, changed.revision, _definition(changed), storedInstant(now),
                        changed.id))
            return changed

        return self._store.transact(work)

    def remove(self, idOrName: str) -> Deferred[Schedule]:
        """Delete a schedule (and its state; its slots' records are kept)."""

        def work(db: sqlite3.Connection) -> Schedule:
            schedule = _find(db, idOrName)
            db.execute("DELETE FROM schedules WHERE id = ?", (schedule.id,))
            return schedule

        return self._store.transact(work)

    def get(self, idOrName: str) -> Deferred[Schedule]:
        """The schedule whose id, or else name, is C{idOrName}; C{NOT_FOUND} if none."""
        return self._store.transact(lambda db: _find(db, idOrName))

    def list(self) -> Deferred[list[Schedule]]:
        """Every schedule, by name."""
        return self._store.transact(lambda db: [
            _fromRow(definition) for (definition,) in
            db.execute("SELECT definition FROM schedules ORDER BY name").fetchall()])

    # -- the scheduler's state

    def states(self) -> Deferred[dict[str, ScheduleState]]:
        """The state of every schedule that has one, by schedule id."""

        def work(db: sqlite3.Connection) -> dict[str, ScheduleState]:
            rows = db.execute("SELECT scheduleId, revision, nextFire, queuedFire, lastFire, "
                              "lastRunId FROM schedule_state").fetchall()
            return {row[0]: ScheduleState(row[0], row[1], instantOf(row[2]), instantOf(row[3]),
                                          instantOf(row[4]), row[5]) for row in rows}

        return self._store.transact(work)

    def save(self, state: ScheduleState, records: Sequence[FireRecord],
             now: datetime) -> Deferred[bool]:
        """
        Write C{state} and C{records} in one transaction; C{False} (and
        nothing written) if the schedule is gone or changed revision
        meanwhile (the CLI edited it: the scheduler will look again).
        """

        def work(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT revision FROM schedules WHERE id = ?",
                             (state.scheduleId,)).fetchone()
            if row is None or row[0] != state.revision:
                return False
            db.execute(
                "INSERT OR REPLACE INTO schedule_state (scheduleId, revision, nextFire, "
                "queuedFire, lastFire, lastRunId, updatedAt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (state.scheduleId, state.revision, storedInstant(state.nextFire),
                 storedInstant(state.queuedFire), storedInstant(state.lastFire), state.lastRunId,
                 storedInstant(now)))
            for record in records:
                db.execute(
                    "INSERT OR REPLACE INTO schedule_fires (scheduleId, fireTime, runId, "
                    "outcome, detail, recordedAt) VALUES (?, ?, ?, ?, ?, ?)",
                    (record.scheduleId, storedInstant(record.fireTime), record.runId,
                     record.outcome, record.detail, storedInstant(record.recordedAt or now)))
            return True

        return self._store.transact(work)

    def recordRejection(self, op: str) -> Deferred[None]:
        """One more schedule C{op} (C{create}, C{update}) refused."""
        return self._store.transact(lambda db: db.execute(
            "INSERT INTO schedule_rejections (op, count) VALUES (?, 1) "
            "ON CONFLICT (op) DO UPDATE SET count = count + 1", (op,)) and None)

    def rejections(self) -> Deferred[dict[str, int]]:
        """Schedule operations refused so far, by operation."""
        return self._store.transact(lambda db: dict(
            db.execute("SELECT op, count FROM schedule_rejections").fetchall()))

    def fires(self, scheduleId: str | None = None, limit: int = 50) -> Deferred[
            list[FireRecord]]:
        """The latest records of slots (of one schedule, or all), newest slot first."""

        def work(db: sqlite3.Connection) -> list[FireRecord]:
            where, arguments = ("WHERE scheduleId = ?", (scheduleId,)) if scheduleId else (
                "", ())
            rows = db.execute(
                "SELECT scheduleId, fireTime, runId, outcome, detail, recordedAt FROM "
                f"schedule_fires {where} ORDER BY fireTime DESC LIMIT ?",
                (*arguments, limit)).fetchall()
            return [FireRecord(row[0], _instant(row[1]), row[2], row[3], row[4],
                               instantOf(row[5])) for row in rows]

        return self._store.transact(work)


def _instant(text: str) -> datetime:
    value = instantOf(text)
    assert value is not None
    return value


def _definition(schedule: Schedule) -> str:
    return json.dumps(scheduleConverter.unstructure(schedule), sort_keys=True)


def _fromRow(definition: str) -> Schedule:
    return scheduleConverter.structure(json.loads(definition), Schedule)


def _notFound(idOrName: str) -> BackupRemoteError:
    return BackupRemoteError(NOT_FOUND, f"no schedule has the id or name {idOrName!r}; "
                             "`backupremote schedule list` shows them")


def _find(db: sqlite3.Connection, idOrName: str) -> Schedule:
    row = db.execute("SELECT definition FROM schedules WHERE id = ?", (idOrName,)).fetchone()
    if row is None:
        row = db.execute("SELECT definition FROM schedules WHERE name = ?",
                         (idOrName,)).fetchone()
    if row is None:
        raise _notFound(idOrName)
    return _fromRow(row[0])


def _refuseTakenName(db: sqlite3.Connection, name: str, ownId: str | None) -> None:
    row = db.execute("SELECT id FROM schedules WHERE name = ?", (name,)).fetchone()
    if row is not None and row[0] != ownId:
        raise BackupRemoteError(CONFLICT, f"a schedule is already named {name!r}; "
                                "choose another name")
