"""
Runs and their events in the server's SQLite store.

A run's status is kept whole as JSON (the wire model), with the columns
the server looks runs up by beside it. The artifact's path on disk is kept
in its own column and never leaves the server.

Durability: the run's record (what C{executeBackup} answers for), its end
and its last event are committed to the disk before the server goes on.
With a L{WalFlush}, the record's wait for the disk happens in a worker
thread (L{RunStore.record}): the insert is committed at once, the answer
waits for the flush.
The writes in between (a run's state while it works, its progress events)
are committed without waiting for the disk (C{synchronous=NORMAL} for that
statement, WAL mode): they survive the server's end, C{kill -9} included,
and a power cut can only lose some of them, of a run the restart marks
C{INTERRUPTED} anyway; the next full commit makes them durable too. Each of
them waited for an fsync on the reactor thread before: 20 servers with 10
runs each, started at once on one machine, queued their admissions behind
hundreds of those.
"""

from __future__ import annotations

import json
import sqlite3

from attrs import evolve
from twisted.internet.defer import Deferred, succeed

from backupremote.protocol.runs import TERMINAL, RunEvent, RunStatus
from backupremote.protocol.structured import converter
from backupremote.server.state.durability import WalFlush


def _json(value: object, kind: type) -> str:
    return json.dumps(converter.unstructure(value, kind), sort_keys=True)


def _insertStatement(status: RunStatus) -> tuple[str, tuple[object, ...]]:
    return (
        "INSERT INTO runs (runId, databaseConfigId, clientId, state, status, createdAt) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (status.runId, status.databaseConfigId, status.clientId, status.state,
         _json(status, RunStatus), status.createdAt.isoformat() if status.createdAt else ""),
    )


class RunStore:
    """Typed access to the C{runs} and C{run_events} tables."""

    def __init__(self, db: sqlite3.Connection, flush: WalFlush | None = None) -> None:
        self._db = db
        self._flush = flush
        #: the connection's own setting, for the commits that must reach the disk
        self._synchronous = db.execute("PRAGMA synchronous").fetchone()[0]

    def _passing(self, sql: str, arguments: tuple[object, ...]) -> None:
        """One statement whose commit does not wait for the disk (see the module)."""
        if self._db.in_transaction or self._synchronous <= 1:
            self._db.execute(sql, arguments)  # the enclosing commit decides
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            self._db.execute(sql, arguments)
        finally:
            self._db.execute(f"PRAGMA synchronous={int(self._synchronous)}")

    def insert(self, status: RunStatus) -> None:
        """Store a new run, waiting for the disk on this thread."""
        self._db.execute(*_insertStatement(status))

    def record(self, status: RunStatus) -> Deferred[None]:
        """
        Store a new run; fires once its record is on the disk. Readers see it
        at once; without a L{WalFlush} (or before the WAL file exists) the
        commit waits for the disk on this thread, as L{insert} does.
        """
        if self._flush is None or self._db.in_transaction or not self._flush.available():
            self.insert(status)
            return succeed(None)
        self._passing(*_insertStatement(status))
        return self._flush.flush().addCallback(lambda _: None)

    def save(self, status: RunStatus, artifactPath: str | None = None) -> None:
        """The run's status now; it reaches the disk before this returns once the run ended."""
        write = self._db.execute if status.state in TERMINAL else self._passing
        write(
            "UPDATE runs SET state = ?, status = ?, artifactPath = coalesce(?, artifactPath) "
            "WHERE runId = ?",
            (status.state, _json(status, RunStatus), artifactPath, status.runId),
        )

    def get(self, runId: str) -> RunStatus | None:
        row = self._db.execute("SELECT status FROM runs WHERE runId = ?", (runId,)).fetchone()
        return converter.structure(json.loads(row[0]), RunStatus) if row else None

    def artifactPath(self, runId: str) -> str | None:
        row = self._db.execute("SELECT artifactPath FROM runs WHERE runId = ?",
                               (runId,)).fetchone()
        return row[0] if row else None

    def runOfFile(self, fileId: str) -> str | None:
        """The run whose status names C{fileId} as its artifact (even once it is gone)."""
        row = self._db.execute(
            "SELECT runId FROM runs WHERE json_extract(status, '$.artifact.fileId') = ?",
            (fileId,)).fetchone()
        return row[0] if row else None

    def artifactRemoved(self, runId: str) -> None:
        """The run's artifact left staging (released, expired): its status says so."""
        status = self.get(runId)
        if status is None or status.artifact is None or not status.artifact.staged:
            return
        self._db.execute(
            "UPDATE runs SET status = ?, artifactPath = NULL WHERE runId = ?",
            (_json(evolve(status, artifact=evolve(status.artifact, staged=False)), RunStatus),
             runId))

    def unfinished(self) -> list[RunStatus]:
        """Runs the server was working on when it stopped."""
        placeholders = ", ".join("?" for _ in TERMINAL)
        rows = self._db.execute(
            f"SELECT status FROM runs WHERE state NOT IN ({placeholders})", tuple(TERMINAL))
        return [converter.structure(json.loads(row[0]), RunStatus) for row in rows]

    def runIds(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT runId FROM runs")}

    def addEvent(self, event: RunEvent) -> None:
        """An event of the run; its last one (complete, failed) reaches the disk before this returns."""
        write = self._passing if event.kind == "progress" else self._db.execute
        write("INSERT INTO run_events (runId, seq, event) VALUES (?, ?, ?)",
              (event.runId, event.seq, _json(event, RunEvent)))

    def events(self, runId: str, afterSeq: int = 0) -> list[RunEvent]:
        rows = self._db.execute(
            "SELECT event FROM run_events WHERE runId = ? AND seq > ? ORDER BY seq",
            (runId, afterSeq))
        return [converter.structure(json.loads(row[0]), RunEvent) for row in rows]
