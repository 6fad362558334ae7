"""
SQLite: a database file on the server, read in-process.

A configuration names only C{path} (already resolved under the roots the
operator allows by the common validator). The probe opens the file
read-only (C{mode=ro} URI) in a thread of the reactor's pool, so a slow disk
never blocks the reactor; the dump will use the online backup API of
Python's C{sqlite3} module, which needs no external program.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from zope.interface import implementer

from backupremote.protocol.databases import (
    ConnectionTestResult,
    DatabaseConfigInput,
    ToolChoice,
)
from backupremote.protocol.errors import (
    DATABASE_NOT_FOUND,
    DB_ERROR,
    DISK_FULL,
    DUMP_FAILED,
    PERMISSION_DENIED,
    TIMEOUT,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import (
    FieldProblems,
    IEngine,
    Target,
    classify,
    failed,
)
from backupremote.server.engines.dumps import (
    BackupStopped,
    DumpPlan,
    EngineCheck,
    InProcessDump,
)
from backupremote.server.machinery.toolfinder import ToolFinder

#: How the probe runs a blocking function: C{runInThread(f, *args)} -> Deferred.
ThreadRunner = Callable[..., Deferred[Any]]

#: SQLite error names and messages, first match wins. The error name
#: (C{SQLITE_NOTADB}...) comes from Python 3.11's C{sqlite_errorname}.
SQLITE_ERRORS: tuple[tuple[str, str], ...] = (
    (r"SQLITE_INTERRUPT|\binterrupted\b", TIMEOUT),
    (r"SQLITE_NOTADB|file is not a database|file is encrypted", DATABASE_NOT_FOUND),
    (r"SQLITE_PERM|SQLITE_AUTH|permission denied|not authorized|access denied",
     PERMISSION_DENIED),
    (r"SQLITE_BUSY|SQLITE_LOCKED|database is locked|database table is locked", DB_ERROR),
    (r"SQLITE_CANTOPEN|unable to open database file|no such file", DATABASE_NOT_FOUND),
)

_NOT_A_DATABASE = ("the file is not an SQLite database (or it is encrypted or "
                   "damaged in its header)")


def classifySQLiteError(error: BaseException) -> str:
    """The reason code of an exception met while opening or reading a database."""
    if isinstance(error, sqlite3.Error):
        name = getattr(error, "sqlite_errorname", "") or ""
        return classify(f"{name} {error}", SQLITE_ERRORS, DB_ERROR)
    if isinstance(error, OSError):
        return classifyErrno(error.errno)
    return DB_ERROR


def classifyErrno(number: int | None) -> str:
    """The reason code of an OS error number met on the database file."""
    if number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PERMISSION_DENIED
    if number in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR):
        return DATABASE_NOT_FOUND
    return DB_ERROR


def describe(reason: str, error: BaseException) -> str:
    """An actionable message for C{error} classified as C{reason}."""
    if reason == DATABASE_NOT_FOUND and "not a database" in str(error).lower():
        return _NOT_A_DATABASE
    if reason == TIMEOUT:
        return "the database did not answer in the time allowed"
    if reason == PERMISSION_DENIED:
        return "the server's account may not read the database file"
    text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if reason == DATABASE_NOT_FOUND:
        return f"the database file cannot be opened: {text}"
    if "locked" in text.lower() or "busy" in text.lower():
        return f"the database is locked by another connection: {text}"
    return f"SQLite error: {text}"


def checkFile(path: str) -> ConnectionTestResult | None:
    """
    A failed result if C{path} is plainly not a readable file, else C{None}.

    SQLite reports a missing or unreadable file as "unable to open database
    file"; looking first gives a precise reason. C{os.access} is what an
    unprivileged server account would meet (root passes it anyway).
    """
    tool = toolName()
    if not os.path.lexists(path):
        return failed(DATABASE_NOT_FOUND, "the database file does not exist", tool)
    if os.path.isdir(path):
        return failed(DATABASE_NOT_FOUND, "the path is a folder, not a database file", tool)
    if not os.access(path, os.R_OK):
        return failed(PERMISSION_DENIED, "the server's account may not read the database file",
                      tool)
    return None


def toolName() -> str:
    return f"python sqlite3 {sqlite3.sqlite_version}"


def readOnlyURI(path: str) -> str:
    """The C{file:} URI opening C{path} read-only (C{?} and C{#} quoted)."""
    return f"file:{quote(path)}?mode=ro"


def probeFile(path: str, timeout: float, seconds: Callable[[], float]) -> ConnectionTestResult:
    """
    Open C{path} read-only and read its version and size (blocking: run it in
    a thread). Never raises for a database problem. The latency is measured
    on C{seconds} (the reactor's clock); the C{timeout} is a watchdog on
    the machine's monotonic clock, as SQLite's own busy timeout is.
    """
    problem = checkFile(path)
    if problem is not None:
        return problem
    started = seconds()
    deadline = time.monotonic() + timeout
    try:
        connection = sqlite3.connect(readOnlyURI(path), uri=True, timeout=timeout,
                                     check_same_thread=False)
    except (sqlite3.Error, OSError) as error:
        reason = classifySQLiteError(error)
        return failed(reason, describe(reason, error), toolName())
    try:
        # Abort a statement that outlives the deadline (SQLITE_INTERRUPT).
        connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        (version,) = connection.execute("select sqlite_version()").fetchone()
        # Reading the schema proves the file is a database (the header is checked
        # on the first read, not on open).
        connection.execute("select type, name from sqlite_master limit 1").fetchall()
        (pageCount,) = connection.execute("PRAGMA page_count").fetchone()
        (pageSize,) = connection.execute("PRAGMA page_size").fetchone()
    except (sqlite3.Error, OSError) as error:
        reason = classifySQLiteError(error)
        return failed(reason, describe(reason, error), toolName(),
                      (seconds() - started) * 1000)
    finally:
        connection.close()
    latency = (seconds() - started) * 1000
    return ConnectionTestResult(
        ok=True, reason=None, message=f"SQLite {version} database readable",
        serverVersion=str(version), latencyMs=latency,
        sizeBytes=int(pageCount) * int(pageSize), tool=toolName(),
    )


@implementer(IEngine)
class SQLiteEngine:
    """SQLite files on the server; C{runInThread} is injectable for tests."""

    name = "sqlite"
    defaultPort = None
    programs: tuple[tuple[str, str], ...] = ()  # the backup API is Python's own
    formats = ("file",)
    optionNames: frozenset[str] = frozenset()
    optionsKeepingPassword: frozenset[str] = frozenset()

    def __init__(self, runInThread: ThreadRunner | None = None) -> None:
        self.runInThread = runInThread

    def validate(self, config: DatabaseConfigInput, problems: FieldProblems) -> None:
        problems.require(config, ["path"], self.name)
        problems.forbid(config, ["host", "port", "database", "user", "password"], self.name)
        for key in config.options:
            problems.add(f"options.{key}", "is not an option of sqlite (it takes none)")

    async def probe(self, target: Target, tools: ToolFinder, reactor: IWorkReactor,
                    timeout: float) -> ConnectionTestResult:
        if not target.path:
            return failed(DATABASE_NOT_FOUND, "the configuration names no database file",
                          toolName())
        if self.runInThread is not None:
            return await self.runInThread(probeFile, target.path, timeout, reactor.seconds)
        return await deferToThreadPool(reactor, reactor.getThreadPool(), probeFile,
                                       target.path, timeout, reactor.seconds)

    async def chooseDumpTool(self, tools: ToolFinder, serverVersion: str | None) -> ToolChoice:
        return ToolChoice(
            name="sqlite3-backup-api", path="(in-process)", version=sqlite3.sqlite_version,
            reason="the online backup API of Python's sqlite3 module copies a consistent "
                   "snapshot while the database stays in use; no external program needed",
        )

    async def dumpPlan(self, target: Target, format: str, tools: ToolFinder,
                       serverVersion: str | None) -> DumpPlan:
        if not target.path:
            raise BackupRemoteError(VALIDATION_FAILED, "the configuration names no database file")
        source = target.path

        def backup(destinationPath: str, shouldStop: Callable[[], bool],
                   onProgress: Callable[[int, int], None]) -> int:
            return backupInto(source, destinationPath, shouldStop, onProgress)

        check = EngineCheck(description="SQLite's integrity check",
                            head=lambda head: head.startswith(SQLITE_HEADER),
                            fileCheck=integrityCheck, fullScratchSuffix=".sqlite")
        return DumpPlan(
            format=format, extension=".sqlite",
            toolName=f"sqlite3 backup API {sqlite3.sqlite_version}", check=check,
            inProcess=InProcessDump("backupremote-sqlite-backup", backup, dumpFailure))


# --- Dumps and their checks (the parts of SQLiteEngine.dumpPlan) ------------

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"

#: Bytes copied per step of the online backup: small enough to notice a
#: cancel quickly, let writers in between steps and keep memory flat (a
#: fixed 1024 pages was 64 MiB a step with 64 KiB pages).
BACKUP_STEP_BYTES = 4 << 20


def stepPages(pageSize: int) -> int:
    """Pages per backup step for databases with C{pageSize}-byte pages."""
    return max(1, BACKUP_STEP_BYTES // pageSize)


def backupInto(sourcePath: str, destinationPath: str, shouldStop: Callable[[], bool],
               onProgress: Callable[[int, int], None]) -> int:
    """
    Copy a consistent snapshot of the database at C{sourcePath} into a new
    file C{destinationPath} with the online backup API (blocking: run it in
    a thread). C{onProgress(bytesDone, bytesTotal)} is called after each
    step; C{shouldStop()} true aborts with L{BackupStopped}. The copy has no
    journal (it is a scratch file until the backup is complete), so nothing
    but C{destinationPath} is ever created. Returns the copy's size.
    """
    source = sqlite3.connect(readOnlyURI(sourcePath), uri=True, check_same_thread=False)
    try:
        (pageSize,) = source.execute("PRAGMA page_size").fetchone()
        destination = sqlite3.connect(destinationPath, check_same_thread=False)
        try:
            destination.execute("PRAGMA journal_mode=OFF")
            destination.execute("PRAGMA synchronous=OFF")

            def progress(status: int, remaining: int, total: int) -> None:
                onProgress((total - remaining) * pageSize, total * pageSize)
                if shouldStop():
                    raise BackupStopped()

            source.backup(destination, pages=stepPages(pageSize), progress=progress)
        finally:
            destination.close()
    finally:
        source.close()
    return os.path.getsize(destinationPath)


def integrityCheck(path: str, shouldStop: Callable[[], bool]) -> str | None:
    """
    C{None} if C{PRAGMA integrity_check} of the database file at C{path}
    says "ok", else what it found (blocking: run it in a thread). The file
    is opened read-only and immutable: nothing is written next to it.
    """
    uri = f"file:{quote(path)}?mode=ro&immutable=1"
    try:
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as error:
        return str(error)
    try:
        connection.set_progress_handler(lambda: int(shouldStop()), 10000)
        rows = connection.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.Error as error:
        if shouldStop():
            raise BackupStopped() from error
        return str(error)
    finally:
        connection.close()
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found[:5])


def dumpFailure(error: BaseException) -> BackupRemoteError | None:
    """What a failed L{backupInto} means for the client (C{None}: not a database error)."""
    if not isinstance(error, (sqlite3.Error, OSError)):
        return None
    diskFull = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    if diskFull or getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
        return BackupRemoteError(DISK_FULL, "the server's temp folder is full: the SQLite "
                                 "backup could not be written; its partial files were removed")
    return BackupRemoteError(DUMP_FAILED, describe(classifySQLiteError(error), error))
