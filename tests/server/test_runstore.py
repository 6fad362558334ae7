"""
L{RunStore}'s durability: the run's record, its end and its last event are
committed to the disk; its state while it works and its progress events
are committed without waiting for the disk.
"""

from __future__ import annotations

from datetime import datetime, timezone

from attrs import evolve
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import RunEvent, RunStatus
from backupremote.server.runs.store import RunStore
from backupremote.server.state.store import ServerStore

AT = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


class DurabilityTests(SynchronousTestCase):
    def setUp(self) -> None:
        folder = FilePath(self.mktemp())
        self.store = ServerStore.inDataDir(folder)
        self.addCleanup(self.store.close)
        self.db = self.store.connection
        self.full = self.db.execute("PRAGMA synchronous").fetchone()[0]
        self.runs = RunStore(self.db)
        self.statements: list[str] = []
        self.db.set_trace_callback(self.statements.append)
        self.status = RunStatus(runId="run-1", databaseConfigId="db", clientId="c",
                                options=BackupOptions(), state="queued", stage="queued",
                                createdAt=AT)

    def passing(self) -> list[str]:
        """The writes since the last look committed without waiting for the disk."""
        found, relaxed = [], False
        for statement in self.statements:
            if statement == "PRAGMA synchronous=NORMAL":
                relaxed = True
            elif statement.startswith("PRAGMA synchronous="):
                relaxed = False
            elif relaxed:
                found.append(statement.split()[0])
        self.statements.clear()
        return found

    def event(self, kind: str, seq: int) -> RunEvent:
        return RunEvent("run-1", seq, kind, "dump", 10, AT)

    def test_recordAndEndReachTheDisk(self) -> None:
        """executeBackup's record, the run's end and its last event wait for the disk."""
        self.db.execute("PRAGMA foreign_keys=OFF")  # no database configuration needed here
        self.runs.insert(self.status)
        self.assertEqual(self.passing(), [])
        self.runs.save(evolve(self.status, state="completed"))
        self.assertEqual(self.passing(), [])
        self.runs.addEvent(self.event("complete", 2))
        self.runs.addEvent(self.event("failed", 3))
        self.assertEqual(self.passing(), [])

    def test_progressDoesNotWait(self) -> None:
        """A working run's state and its progress events are committed without an fsync."""
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.runs.insert(self.status)
        self.statements.clear()
        self.runs.save(evolve(self.status, state="running", stage="dump"))
        self.runs.addEvent(self.event("progress", 1))
        self.assertEqual(self.passing(), ["UPDATE", "INSERT"])
        # and the connection is back to its own setting, for every other write
        self.assertEqual(self.db.execute("PRAGMA synchronous").fetchone()[0], self.full)
        self.assertEqual(self.runs.get("run-1").state, "running")
        self.assertEqual([e.kind for e in self.runs.events("run-1")], ["progress"])

    def test_insideATransactionTheCommitDecides(self) -> None:
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.runs.insert(self.status)
        self.statements.clear()
        self.db.execute("BEGIN")
        self.runs.save(evolve(self.status, state="running"))
        self.db.execute("COMMIT")
        self.assertEqual(self.passing(), [])
        self.assertNotIn("PRAGMA synchronous=NORMAL", self.statements)
