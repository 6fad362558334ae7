"""
Jobs in the client's store (the tables of migration 1).

L{JobStore} is typed access over any L{IClientStore}. Every method is one
transaction, so a job's step is recorded whole or not at all. L{advance}
moves a job from the state it was read in and no other (compare and set):
two drivers of one job cannot both record the same step.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from attrs import evolve
from twisted.internet.interfaces import IReactorTime

from backupremote.client.jobs.model import (
    CANCELLED,
    FAILED,
    STATES,
    Destination,
    Job,
    JobRequest,
    LocalFolder,
    NamedDestination,
    Receipt,
)
from backupremote.client.store import IClientStore
from backupremote.client.store.instants import instantOf, storedInstant
from backupremote.protocol.errors import CONFLICT, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import RunStatus
from backupremote.protocol.structured import converter
from backupremote.protocol.transfers import FileEntry

_COLUMNS = ("runId, server, databaseConfigId, options, scheduleId, fireTime, goal, state, "
            "downloadFolder, keepDownload, destinations, status, artifact, artifactPath, "
            "failedStep, errorCode, errorMessage, createdAt, updatedAt")


def _json(value: Any, kind: Any) -> str | None:
    return None if value is None else json.dumps(converter.unstructure(value, kind),
                                                  sort_keys=True)


def _load(value: str | None, kind: Any) -> Any:
    return None if value is None else converter.structure(json.loads(value), kind)


def _destinations(destinations: Iterable[Destination]) -> str:
    return json.dumps([converter.unstructure(d, type(d)) for d in destinations])


def _destination(data: dict[str, Any]) -> Destination:
    """A stored destination: a named one has an id, a local folder a path."""
    return converter.structure(data, NamedDestination if "id" in data else LocalFolder)


class JobMoved(BackupRemoteError):
    """The job was not in the state it was read in: another driver moved it."""


def now(clock: IReactorTime) -> Callable[[], datetime]:
    """The current time of C{clock}, as an aware UTC datetime."""
    return lambda: datetime.fromtimestamp(clock.seconds(), timezone.utc)


class JobStore:
    """The C{jobs}, C{job_steps} and C{receipts} tables."""

    def __init__(self, store: IClientStore, now: Callable[[], datetime]) -> None:
        self.store = store
        self._now = now

    # Reading

    def get(self, runId: str) -> Any:
        """Fires with the L{Job} of C{runId}, or C{None}."""
        return self.store.transact(lambda db: _get(db, runId))

    def unfinished(self, scheduleId: str | None = None) -> Any:
        """Fires with the jobs (of C{scheduleId}) that have steps left to do, oldest first."""
        return self.store.transact(lambda db: _unfinished(db, scheduleId))

    def busySchedules(self) -> Any:
        """Fires with the ids of the schedules that have a job with steps left to do."""
        return self.store.transact(lambda db: {scheduleId for (scheduleId,) in db.execute(
            f"SELECT DISTINCT scheduleId FROM jobs WHERE {_OPEN} AND scheduleId IS NOT NULL",
            _OPEN_STATES)})

    def recent(self, limit: int = 50) -> Any:
        """Fires with the last C{limit} jobs recorded, newest first."""
        return self.store.transact(lambda db: [_job(db, row) for row in db.execute(
            f"SELECT {_COLUMNS} FROM jobs ORDER BY createdAt DESC, runId LIMIT ?",
            (limit,)).fetchall()])

    def history(self, scheduleId: str | None = None, databaseConfigId: str | None = None,
                server: str | None = None, states: Iterable[str] = (),
                since: datetime | None = None, limit: int | None = None) -> Any:
        """
        Fires with the jobs that match every filter given, newest first
        (C{states}: any of these stored states; C{since}: created at or after).
        """
        where, values = ["1"], []  # type: ignore[var-annotated]
        for column, value in (("scheduleId", scheduleId), ("databaseConfigId", databaseConfigId),
                              ("server", server)):
            if value is not None:
                where.append(f"{column} = ?")
                values.append(value)
        states = tuple(states)
        if states:
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            values += states
        if since is not None:
            where.append("createdAt >= ?")
            values.append(storedInstant(since))
        sql = (f"SELECT {_COLUMNS} FROM jobs WHERE {' AND '.join(where)} "
               "ORDER BY createdAt DESC, runId")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.store.transact(lambda db: [_job(db, row) for row in
                                               db.execute(sql, values).fetchall()])

    def lastPerDatabase(self, server: str | None = None) -> Any:
        """Fires with C{{databaseConfigId: Job}}: the newest job of each configuration."""

        def work(db: sqlite3.Connection) -> dict[str, Job]:
            where, values = "databaseConfigId IS NOT NULL", []
            if server is not None:
                where += " AND server = ?"
                values.append(server)
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs AS j WHERE {where} AND createdAt = "
                "(SELECT max(createdAt) FROM jobs WHERE databaseConfigId = j.databaseConfigId"
                " AND server = j.server)", values).fetchall()
            return {job.databaseConfigId: job for job in (_job(db, row) for row in rows)
                    if job.databaseConfigId is not None}

        return self.store.transact(work)

    def steps(self, runId: str) -> Any:
        """Fires with C{[(state, at, detail)]}: the job's history, oldest first."""
        return self.store.transact(lambda db: [
            (state, instantOf(at), detail) for state, at, detail in db.execute(
                "SELECT state, at, detail FROM job_steps WHERE runId = ? ORDER BY seq",
                (runId,))])

    # Writing

    def create(self, request: JobRequest, workFolder: str) -> Any:
        """
        Record a new job for C{request} (C{pending}, or C{running} for a run
        started elsewhere), or fire with the job C{runId} has already
        (C{(job, created)}).
        """
        now = storedInstant(self._now())
        state = "pending" if request.databaseConfigId is not None else "running"

        def work(db: sqlite3.Connection) -> tuple[Job, bool]:
            existing = _get(db, request.runId)
            if existing is not None:
                return existing, False
            folder = request.downloadFolder
            db.execute(
                f"INSERT INTO jobs ({_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, NULL, NULL, ?, ?)",
                (request.runId, request.server, request.databaseConfigId,
                 _json(request.options, BackupOptions), request.scheduleId,
                 storedInstant(request.fireTime), request.goal, state,
                 folder or f"{workFolder}/{request.runId}", 1 if folder else 0,
                 _destinations(request.destinations), now, now))
            _logStep(db, request.runId, state, now, "requested")
            job = _get(db, request.runId)
            assert job is not None
            return job, True

        return self.store.transact(work)

    def advance(self, job: Job, state: str, detail: str | None = None,
                receipts: Iterable[Receipt] = (), **changes: Any) -> Any:
        """
        Move C{job} from the state it was read in to C{state}, with
        C{changes} (C{status}, C{artifact}, C{artifactPath}, C{failedStep},
        C{errorCode}, C{errorMessage}, C{goal}, C{downloadFolder},
        C{keepDownload}, C{destinations}) and C{receipts}; fires with the new L{Job}.

        @raise JobMoved: (C{CONFLICT}) if the job is no longer in the state it
            was read in (another driver moved it).
        """
        if state not in STATES and state not in (FAILED, CANCELLED):
            raise ValueError(f"unknown state {state!r}")
        now = self._now()
        updated = evolve(job, state=state, updatedAt=now, **changes)
        receipts = tuple(receipts)

        def work(db: sqlite3.Connection) -> Job:
            changed = db.execute(
                "UPDATE jobs SET state = ?, goal = ?, downloadFolder = ?, keepDownload = ?, "
                "destinations = ?, status = ?, artifact = ?, artifactPath = ?, failedStep = ?, "
                "errorCode = ?, errorMessage = ?, updatedAt = ? WHERE runId = ? AND state = ?",
                (updated.state, updated.goal, updated.downloadFolder, int(updated.keepDownload),
                 _destinations(updated.destinations), _json(updated.status, RunStatus),
                 _json(updated.artifact, FileEntry), updated.artifactPath, updated.failedStep,
                 updated.errorCode, updated.errorMessage, storedInstant(now), job.runId, job.state),
            ).rowcount
            if not changed:
                raise JobMoved(CONFLICT, (
                    f"run {job.runId} moved on while this client was at its step "
                    f"{job.state!r}: another process drives it"))
            for receipt in receipts:
                db.execute(
                    "INSERT OR REPLACE INTO receipts (runId, destination, name, size, sha256, "
                    "method, verifiedAt) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job.runId, receipt.destination, receipt.name, receipt.size,
                     receipt.sha256, receipt.method, storedInstant(receipt.verifiedAt)))
            _logStep(db, job.runId, state, storedInstant(now), detail)
            fresh = _get(db, job.runId)
            assert fresh is not None
            return fresh

        return self.store.transact(work)


def _logStep(db: sqlite3.Connection, runId: str, state: str, at: str | None,
             detail: str | None) -> None:
    db.execute(
        "INSERT INTO job_steps (runId, seq, state, at, detail) VALUES (?, "
        "(SELECT coalesce(max(seq), 0) + 1 FROM job_steps WHERE runId = ?), ?, ?, ?)",
        (runId, runId, state, at, detail))


def _job(db: sqlite3.Connection, row: tuple[Any, ...]) -> Job:
    (runId, server, databaseConfigId, options, scheduleId, fireTime, goal, state,
     downloadFolder, keepDownload, destinations, status, artifact, artifactPath,
     failedStep, errorCode, errorMessage, createdAt, updatedAt) = row
    receipts = tuple(
        Receipt(destination, name, size, sha256, method, instantOf(verifiedAt))  # type: ignore[arg-type]
        for destination, name, size, sha256, method, verifiedAt in db.execute(
            "SELECT destination, name, size, sha256, method, verifiedAt FROM receipts "
            "WHERE runId = ? ORDER BY destination", (runId,)))
    return Job(
        runId=runId, server=server, databaseConfigId=databaseConfigId,
        options=_load(options, BackupOptions), scheduleId=scheduleId,
        fireTime=instantOf(fireTime), goal=goal, state=state, downloadFolder=downloadFolder,
        keepDownload=bool(keepDownload),
        destinations=tuple(_destination(d) for d in json.loads(destinations)),
        createdAt=instantOf(createdAt), updatedAt=instantOf(updatedAt),  # type: ignore[arg-type]
        status=_load(status, RunStatus), artifact=_load(artifact, FileEntry),
        artifactPath=artifactPath, failedStep=failedStep, errorCode=errorCode,
        errorMessage=errorMessage, receipts=receipts)


def _get(db: sqlite3.Connection, runId: str) -> Job | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE runId = ?", (runId,)).fetchone()
    return _job(db, row) if row else None


#: The states a job can have steps left from: all but released (the last
#: goal) and failed or cancelled. Named in the SQL so the jobs_state index
#: finds the few open jobs among a long history of released ones.
_OPEN_STATES = STATES[:-1]
_OPEN = f"state IN ({', '.join('?' for _ in _OPEN_STATES)}) AND state != goal"


def _unfinished(db: sqlite3.Connection, scheduleId: str | None) -> list[Job]:
    # A job stops at its goal, so one whose state is its goal has ended (a
    # scheduled job: released). Only the others are read: the scheduler asks
    # this for each due schedule and the daemon's pickup every 2 s, and a
    # year of a schedule every 15 minutes is 35,000 ended jobs, each read
    # with its receipts, that were filtered out here one by one.
    where, values = _OPEN, list(_OPEN_STATES)
    if scheduleId is not None:
        where += " AND scheduleId = ?"
        values.append(scheduleId)
    rows = db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where} "
                      "ORDER BY createdAt, runId", values).fetchall()
    return [job for job in (_job(db, row) for row in rows) if not job.finished]
