"""
The client store: one contract, kept by the SQLite store and its in-memory
twin (L{backupremote.testing.MemoryClientStore}); then what only the file
on disk can show (modes, WAL, durability settings, the worker thread).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from backupremote.client.store import (
    MIGRATIONS,
    STATE_FILE,
    IClientStore,
    SQLiteClientStore,
)
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.testing import MemoryClientStore

_EXTRA = MIGRATIONS + ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"]


class Boom(Exception):
    pass


class ClientStoreContract:
    """What every L{IClientStore} does; subclasses say how one is made."""

    def makeStore(self, migrations: list[str] = _EXTRA) -> Any:
        raise NotImplementedError

    async def test_interface(self) -> None:
        store = self.makeStore()
        await store.opened()
        self.assertTrue(verifyObject(IClientStore, store))
        self.assertEqual(store.schemaVersion, len(_EXTRA))

    async def test_commitIsSeenByLaterTransactions(self) -> None:
        store = self.makeStore()
        rowid = await store.transact(lambda db: db.execute(
            "INSERT INTO notes (body) VALUES ('a')").lastrowid)
        body = await store.transact(lambda db: db.execute(
            "SELECT body FROM notes WHERE id = ?", (rowid,)).fetchone()[0])
        self.assertEqual(body, "a")

    async def test_exceptionRollsBackEverything(self) -> None:
        store = self.makeStore()

        def half(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO notes (body) VALUES ('first')")
            db.execute("INSERT INTO notes (body) VALUES ('second')")
            raise Boom()

        with self.assertRaises(Boom):
            await store.transact(half)
        self.assertEqual(await store.transact(
            lambda db: db.execute("SELECT count(*) FROM notes").fetchone()[0]), 0)

    async def test_sqlErrorRollsBack(self) -> None:
        store = self.makeStore()

        def broken(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO notes (body) VALUES ('kept?')")
            db.execute("INSERT INTO notes (body) VALUES (NULL)")  # NOT NULL

        with self.assertRaises(sqlite3.IntegrityError):
            await store.transact(broken)
        self.assertEqual(await store.transact(
            lambda db: db.execute("SELECT count(*) FROM notes").fetchone()[0]), 0)

    async def test_transactionsRunInOrder(self) -> None:
        store = self.makeStore()
        seen: list[int] = []

        def note(n: int) -> Any:
            def work(db: sqlite3.Connection) -> int:
                db.execute("INSERT INTO notes (body) VALUES (?)", (str(n),))
                seen.append(n)
                return n
            return work

        pending = [store.transact(note(n)) for n in range(20)]
        results = [await d for d in pending]
        self.assertEqual(results, list(range(20)))
        self.assertEqual(seen, list(range(20)))
        bodies = await store.transact(
            lambda db: [r[0] for r in db.execute("SELECT body FROM notes ORDER BY id")])
        self.assertEqual(bodies, [str(n) for n in range(20)])

    async def test_failureAmongOthersIsUndoneAlone(self) -> None:
        """Work asked for together: the one that fails leaves nothing; the others commit."""
        store = self.makeStore()
        await store.opened()

        def insert(body: str, fail: bool = False) -> Any:
            def work(db: sqlite3.Connection) -> None:
                db.execute("INSERT INTO notes (body) VALUES (?)", (body,))
                if fail:
                    raise Boom()
            return work

        pending = [store.transact(insert("a")), store.transact(insert("b", fail=True)),
                   store.transact(insert("c"))]
        await pending[0]
        with self.assertRaises(Boom):
            await pending[1]
        await pending[2]
        bodies = await store.transact(
            lambda db: [r[0] for r in db.execute("SELECT body FROM notes ORDER BY id")])
        self.assertEqual(bodies, ["a", "c"])

    async def test_foreignKeysAreEnforced(self) -> None:
        store = self.makeStore()
        with self.assertRaises(sqlite3.IntegrityError):
            await store.transact(lambda db: db.execute(
                "INSERT INTO job_steps (runId, seq, state, at) VALUES ('nope', 1, 'x', 'now')"))

    async def test_closedStoreRefuses(self) -> None:
        store = self.makeStore()
        await store.transact(lambda db: None)
        await store.close()
        await store.close()  # twice is harmless
        with self.assertRaises(BackupRemoteError):
            await store.transact(lambda db: None)


class MemoryClientStoreTests(ClientStoreContract, TestCase):
    def makeStore(self, migrations: list[str] = _EXTRA) -> MemoryClientStore:
        store = MemoryClientStore(migrations)
        self.addCleanup(store.close)
        return store

    def test_synchronous(self) -> None:
        """The twin's transactions have fired when transact returns (for Clock tests)."""
        store = self.makeStore()
        self.assertEqual(self.successResultOf(store.transact(lambda db: 7)), 7)
        self.assertEqual(store.commits, 1)
        self.failureResultOf(store.transact(lambda db: 1 / 0), ZeroDivisionError)
        self.assertEqual(store.commits, 1)


class SQLiteClientStoreTests(ClientStoreContract, TestCase):
    def setUp(self) -> None:
        self.folder = FilePath(self.mktemp())

    def makeStore(self, migrations: list[str] = _EXTRA) -> SQLiteClientStore:
        self.folder.makedirs(ignoreExistingDirectory=True)
        store = SQLiteClientStore(self.folder.child(STATE_FILE), reactor, migrations)
        self.addCleanup(store.close)
        return store

    async def test_fileIsPrivateWALAndFull(self) -> None:
        previous = os.umask(0o022)  # an embedding application's umask
        try:
            store = SQLiteClientStore.inFolder(self.folder.child("data"), reactor)
            self.addCleanup(store.close)
            await store.transact(lambda db: db.execute(
                "INSERT INTO jobs (runId, server, goal, state, keepDownload, destinations, "
                "createdAt, updatedAt) VALUES ('r', 'default', 'x', 'x', 1, '[]', 'n', 'n')"))
        finally:
            os.umask(previous)
        data = self.folder.child("data")
        self.assertEqual(stat.S_IMODE(os.stat(data.path).st_mode), 0o700)
        for name in (STATE_FILE, STATE_FILE + "-wal", STATE_FILE + "-shm"):
            self.assertEqual(stat.S_IMODE(os.stat(data.child(name).path).st_mode), 0o600, name)
        mode, sync = await store.transact(lambda db: (
            db.execute("PRAGMA journal_mode").fetchone()[0],
            db.execute("PRAGMA synchronous").fetchone()[0]))
        self.assertEqual((mode, sync), ("wal", 2))  # 2: FULL

    async def test_workAskedTogetherSharesOneCommit(self) -> None:
        """Group commit: 50 transactions asked at once take far fewer COMMITs (fsyncs)."""
        store = self.makeStore()
        await store.opened()
        statements: list[str] = []
        await store.transact(lambda db: db.set_trace_callback(statements.append))
        pending = [store.transact(lambda db, n=n: db.execute(
            "INSERT INTO notes (body) VALUES (?)", (str(n),))) for n in range(50)]
        for done in pending:
            await done
        commits = [s for s in statements if s.strip().upper() == "COMMIT"]
        self.assertLessEqual(len(commits), 10, statements[:20])
        self.assertEqual(await store.transact(
            lambda db: db.execute("SELECT count(*) FROM notes").fetchone()[0]), 50)

    async def test_workAskedInOneReactorTurnIsOneCommit(self) -> None:
        """
        What one reactor turn asks for is one transaction (one COMMIT, one
        fsync), even when the reactor thread lets go of the GIL between its
        asks, as it does for each job's lock file: the jobs of 200 schedules
        due together are recorded by one commit, not by the few asked
        before the store's thread got the GIL and then by a second.
        """
        store = self.makeStore()
        await store.opened()
        commits: list[str] = []
        await store.transact(lambda db: db.set_trace_callback(
            lambda statement: commits.append(statement) if statement in ("BEGIN IMMEDIATE", "COMMIT") else None))
        del commits[:]  # that transaction's own
        pending = []
        for n in range(50):
            pending.append(store.transact(lambda db, n=n: db.execute(
                "INSERT INTO notes (body) VALUES (?)", (str(n),))))
            os.sched_yield()  # a system call: the GIL is free for a moment
        for done in pending:
            await done
        self.assertEqual(commits, ["BEGIN IMMEDIATE", "COMMIT"])
        self.assertEqual(await store.transact(
            lambda db: db.execute("SELECT count(*) FROM notes").fetchone()[0]), 50)

    async def test_oneCommitAnswersInOneReactorCall(self) -> None:
        """
        The work of one commit is answered in one call into the reactor: its
        Deferreds fire in the order asked, in one turn, with no read of the
        network between them (the 200 jobs of one commit send their commands
        together, not one turn each while the answers of the first pour in).
        """
        calls: list[int] = []

        @implementer(IReactorFromThreads)
        class CountingReactor:
            """The reactor, numbering each call made into it from the store's thread."""

            def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
                def call() -> None:
                    calls.append(len(calls))
                    f(*args, **kwargs)

                reactor.callFromThread(call)

        self.folder.makedirs()
        store = SQLiteClientStore(self.folder.child(STATE_FILE), CountingReactor(), _EXTRA)
        self.addCleanup(store.close)
        await store.opened()
        commits: list[str] = []
        await store.transact(lambda db: db.set_trace_callback(
            lambda statement: commits.append(statement) if statement == "COMMIT" else None))
        del commits[:]  # that transaction's own
        answered: list[tuple[int, int]] = []
        pending = [store.transact(lambda db, n=n: db.execute(
            "INSERT INTO notes (body) VALUES (?)", (str(n),)).lastrowid).addCallback(
                lambda rowid, n=n: answered.append((n, calls[-1])))
            for n in range(50)]
        for done in pending:
            await done
        self.assertEqual([n for n, _ in answered], list(range(50)))
        self.assertEqual(len({call for _, call in answered}), len(commits))

    async def test_workRunsOffTheReactorThread(self) -> None:
        store = self.makeStore()
        thread = await store.transact(lambda db: threading.current_thread())
        self.assertIsNot(thread, threading.current_thread())
        self.assertIn("backupremote-client-store", thread.name)

    async def test_committedSurvivesReopenAndMigrationsRunOnce(self) -> None:
        store = self.makeStore(MIGRATIONS)
        await store.opened()
        self.assertEqual(store.schemaVersion, len(MIGRATIONS))
        await store.close()
        again = self.makeStore()  # a newer release: one more migration
        await again.transact(lambda db: db.execute("INSERT INTO notes (body) VALUES ('x')"))
        self.assertEqual(again.schemaVersion, len(_EXTRA))
        await again.close()
        third = self.makeStore()
        self.assertEqual(await third.transact(
            lambda db: db.execute("SELECT body FROM notes").fetchall()), [("x",)])

    async def test_newerSchemaIsRefused(self) -> None:
        await self.makeStore().close()
        older = self.makeStore(MIGRATIONS)
        with self.assertRaises(BackupRemoteError) as caught:
            await older.opened()
        self.assertEqual(caught.exception.code, CONFIG_INVALID)
        self.assertIn("newer backupremote", caught.exception.message)
        with self.assertRaises(BackupRemoteError):
            await older.transact(lambda db: None)

    async def test_failedMigrationChangesNothing(self) -> None:
        await self.makeStore(MIGRATIONS).close()
        broken = self.makeStore(MIGRATIONS + ["CREATE TABLE half (x); CREATE TABLE half (y)"])
        with self.assertRaises(sqlite3.OperationalError):
            await broken.opened()
        await broken.close()
        store = self.makeStore(MIGRATIONS)
        tables = await store.transact(lambda db: [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")])
        self.assertNotIn("half", tables)
        self.assertEqual(store.schemaVersion, len(MIGRATIONS))
