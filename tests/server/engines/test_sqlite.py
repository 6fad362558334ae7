"""
The SQLite engine: validation, error classification, and probes of real
database files (made by L{tests.databases.servers.startSQLite} or here).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.errors import (
    DATABASE_NOT_FOUND,
    DB_ERROR,
    PERMISSION_DENIED,
    TIMEOUT,
)
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import FieldProblems, IEngine, Target
from backupremote.server.engines.sqlite import (
    BACKUP_STEP_BYTES,
    SQLiteEngine,
    backupInto,
    classifyErrno,
    classifySQLiteError,
    probeFile,
    readOnlyURI,
    stepPages,
)
from backupremote.server.machinery.toolfinder import ToolFinder
from tests.databases.servers import ROW_COUNT, TABLE, startSQLite

engine = SQLiteEngine()


def synchronously(function: Any, *args: Any) -> Any:
    return succeed(function(*args))


def problemsOf(**fields: Any) -> dict[str, str]:
    problems = FieldProblems()
    engine.validate(DatabaseConfigInput(name="db", engine="sqlite", **fields), problems)
    return problems.fields


class InterfaceTests(TestCase):
    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IEngine, engine))
        self.assertIsInstance(defaultEngines()["sqlite"], SQLiteEngine)
        self.assertEqual(engine.name, "sqlite")
        self.assertIsNone(engine.defaultPort)
        self.assertEqual(engine.optionNames, frozenset())


class ValidateTests(TestCase):
    def test_pathOnlyIsValid(self) -> None:
        self.assertEqual(problemsOf(path="/srv/db/app.sqlite"), {})

    def test_pathRequired(self) -> None:
        self.assertEqual(problemsOf(), {"path": "is required for sqlite"})
        self.assertIn("path", problemsOf(path=""))

    def test_serverFieldsForbidden(self) -> None:
        problems = problemsOf(path="/srv/a.db", host="db.example", port=5432,
                              database="app", user="u", password="secret")
        self.assertEqual(sorted(problems),
                         ["database", "host", "password", "port", "user"])
        self.assertEqual(problems["host"], "does not apply to sqlite")

    def test_noOptions(self) -> None:
        problems = problemsOf(path="/srv/a.db", options={"journal": "wal"})
        self.assertEqual(list(problems), ["options.journal"])


class ClassifyTests(TestCase):
    """Real texts of sqlite3 exceptions, each with its reason."""

    def error(self, message: str, name: str | None = None) -> sqlite3.Error:
        error = sqlite3.OperationalError(message)
        if name is not None:
            error.sqlite_errorname = name
        return error

    def test_messages(self) -> None:
        table = [
            ("file is not a database", "SQLITE_NOTADB", DATABASE_NOT_FOUND),
            ("file is not a database", None, DATABASE_NOT_FOUND),
            ("unable to open database file", "SQLITE_CANTOPEN", DATABASE_NOT_FOUND),
            ("database is locked", "SQLITE_BUSY", DB_ERROR),
            ("database table is locked", "SQLITE_LOCKED", DB_ERROR),
            ("interrupted", "SQLITE_INTERRUPT", TIMEOUT),
            ("access permission denied", "SQLITE_PERM", PERMISSION_DENIED),
            ("not authorized", "SQLITE_AUTH", PERMISSION_DENIED),
            ("database disk image is malformed", "SQLITE_CORRUPT", DB_ERROR),
        ]
        for message, name, expected in table:
            self.assertEqual(classifySQLiteError(self.error(message, name)), expected,
                             (message, name))

    def test_errnos(self) -> None:
        self.assertEqual(classifyErrno(errno.EACCES), PERMISSION_DENIED)
        self.assertEqual(classifyErrno(errno.EPERM), PERMISSION_DENIED)
        self.assertEqual(classifyErrno(errno.ENOENT), DATABASE_NOT_FOUND)
        self.assertEqual(classifyErrno(errno.EISDIR), DATABASE_NOT_FOUND)
        self.assertEqual(classifyErrno(errno.EIO), DB_ERROR)
        self.assertEqual(classifySQLiteError(PermissionError(errno.EACCES, "Permission denied")),
                         PERMISSION_DENIED)

    def test_uriQuotesPath(self) -> None:
        self.assertEqual(readOnlyURI("/srv/a b?c#d.db"), "file:/srv/a%20b%3Fc%23d.db?mode=ro")


class ProbeTests(TestCase):
    """Probes of real files; the thread runner is the reactor's pool unless said."""

    def tools(self) -> ToolFinder:
        return ToolFinder(reactor, [])

    async def probe(self, path: str | None, runner: Any = None, timeout: float = 10):
        eng = SQLiteEngine(runner) if runner is not None else engine
        return await eng.probe(Target("sqlite", path=path), self.tools(), reactor, timeout)

    async def test_success(self) -> None:
        database = await startSQLite(self)
        result = await self.probe(database.path)
        self.assertTrue(result.ok, result)
        self.assertIsNone(result.reason)
        self.assertEqual(result.serverVersion, sqlite3.sqlite_version)
        self.assertEqual(result.tool, f"python sqlite3 {sqlite3.sqlite_version}")
        self.assertGreater(result.sizeBytes, 0)
        self.assertEqual(result.sizeBytes % 512, 0)
        self.assertGreaterEqual(result.latencyMs, 0)
        out = await database.sql(f"select count(*) from {TABLE};")
        self.assertEqual(out.strip(), str(ROW_COUNT))

    async def test_runsInAThread(self) -> None:
        database = await startSQLite(self)
        seen = []

        def runner(function: Any, *args: Any) -> Any:
            def record(*a: Any) -> Any:
                seen.append(threading.current_thread() is threading.main_thread())
                return function(*a)
            from twisted.internet.threads import deferToThreadPool
            return deferToThreadPool(reactor, reactor.getThreadPool(), record, *args)

        result = await self.probe(database.path, runner)
        self.assertTrue(result.ok)
        self.assertEqual(seen, [False])

    async def test_latencyOnTheReactorsClock(self) -> None:
        """The latency is measured on the reactor's clock, not the machine's."""
        database = await startSQLite(self)

        class SteppingClock:
            def __init__(self) -> None:
                self.times = iter([100.0, 100.25])

            def seconds(self) -> float:
                return next(self.times)

        def runner(function: Any, *args: Any) -> Any:
            return succeed(function(*args))

        result = await SQLiteEngine(runner).probe(Target("sqlite", path=database.path),
                                                  self.tools(), SteppingClock(), 10)
        self.assertTrue(result.ok, result)
        self.assertEqual(result.latencyMs, 250.0)

    async def test_readOnly(self) -> None:
        """The probe never writes: no journal, no change of the file."""
        database = await startSQLite(self)
        before = os.stat(database.path)
        result = await self.probe(database.path, synchronously)
        self.assertTrue(result.ok)
        after = os.stat(database.path)
        self.assertEqual((before.st_size, before.st_mtime_ns), (after.st_size, after.st_mtime_ns))
        self.assertEqual(sorted(os.listdir(database.folder)), ["app.sqlite"])

    async def test_missingFile(self) -> None:
        folder = self.mktemp()
        os.makedirs(folder)
        result = await self.probe(os.path.abspath(os.path.join(folder, "nope.db")))
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)
        self.assertIn("does not exist", result.message)
        self.assertEqual(os.listdir(folder), [])  # mode=ro never creates it

    async def test_folder(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        result = await self.probe(folder)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)

    async def test_notADatabase(self) -> None:
        path = os.path.abspath(self.mktemp())
        FilePath(path).setContent(b"this is a text file, not a database\n" * 200)
        result = await self.probe(path)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)
        self.assertIn("not an SQLite database", result.message)
        self.assertNotIn(path, result.message)

    async def test_pathWithQuestionMark(self) -> None:
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "odd ?name#.db")
        connection = sqlite3.connect(path)
        connection.execute("create table t(a)")
        connection.commit()
        connection.close()
        result = await self.probe(path)
        self.assertTrue(result.ok, result)

    async def test_unreadable(self) -> None:
        """
        A file the server's account may not read: PERMISSION_DENIED. Tests
        run as root, who may read anything, so C{os.access} is made to say
        no (it is what the probe asks first).
        """
        database = await startSQLite(self)
        os.chmod(database.path, 0o000)
        real = os.access
        self.patch(os, "access", lambda path, mode, **kw:
                   False if path == database.path else real(path, mode, **kw))
        result = await self.probe(database.path, synchronously)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, PERMISSION_DENIED)

    async def test_locked(self) -> None:
        """An exclusive lock held by another connection: DB_ERROR, after the busy timeout."""
        database = await startSQLite(self)
        holder = sqlite3.connect(database.path, isolation_level=None)
        self.addCleanup(holder.close)
        holder.execute("PRAGMA locking_mode=EXCLUSIVE")
        holder.execute("BEGIN EXCLUSIVE")
        result = probeFile(database.path, 0.2, reactor.seconds)
        self.assertFalse(result.ok)
        self.assertEqual(result.reason, DB_ERROR)
        self.assertIn("locked", result.message)

    async def test_emptyPath(self) -> None:
        result = await self.probe(None)
        self.assertEqual(result.reason, DATABASE_NOT_FOUND)

    async def test_chooseDumpTool(self) -> None:
        choice = await engine.chooseDumpTool(self.tools(), None)
        self.assertEqual(choice.name, "sqlite3-backup-api")
        self.assertEqual(choice.path, "(in-process)")
        self.assertEqual(choice.version, sqlite3.sqlite_version)
        self.assertTrue(choice.reason)


class BackupStepTests(SynchronousTestCase):
    def test_stepsAreBoundedInBytes(self) -> None:
        """
        With 64 KiB pages each step copies at most BACKUP_STEP_BYTES (not
        1024 pages, 64 MiB), and the copy holds the same rows.
        """
        self.assertEqual(stepPages(4096), BACKUP_STEP_BYTES // 4096)
        self.assertEqual(stepPages(65536), BACKUP_STEP_BYTES // 65536)
        self.assertEqual(stepPages(1 << 30), 1)
        source = self.mktemp()
        connection = sqlite3.connect(source)
        connection.execute("PRAGMA page_size=65536")
        connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB)")
        connection.executemany("INSERT INTO blobs (data) VALUES (?)",
                               [(os.urandom(100_000),) for _ in range(120)])
        connection.commit()
        connection.close()
        steps: list[int] = []
        copy = self.mktemp()
        size = backupInto(source, copy, lambda: False, lambda done, total: steps.append(done))
        increments = [b - a for a, b in zip([0, *steps], steps, strict=False)]
        self.assertGreater(len(steps), 2)
        self.assertLessEqual(max(increments), BACKUP_STEP_BYTES)
        self.assertEqual(size, os.path.getsize(source))
        rows = sqlite3.connect(copy).execute("SELECT count(*), sum(length(data)) FROM blobs")
        self.assertEqual(rows.fetchone(), (120, 12_000_000))
