"""
The client store on SQLite, off the reactor.

One connection, used only by one worker thread: transactions run one after
the other in the order they were asked for, and the reactor never waits on
the disk. Group commit: what was asked in one reactor turn, or while the
previous batch ran, runs as one SQLite transaction, each piece of work in a
savepoint of its own (so one that fails is undone alone), with one COMMIT
and so one fsync for all of them: 200 schedules firing at once cost one
fsync for their 200 jobs, not 200. A batch's outcomes come back to the
reactor in one call: its Deferreds fire in one turn, in the order asked.
The file is made 0600 before SQLite opens it (so its C{-wal} and C{-shm}
are 0600 too); WAL mode with C{synchronous=FULL} makes every committed
transaction durable before its Deferred fires. Another process
(the CLI beside the daemon) may open the same file: a transaction waits up
to L{BUSY_TIMEOUT} seconds for the other's to end.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.python.failure import Failure
from twisted.internet.threads import deferToThreadPool
from twisted.python.filepath import FilePath
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from backupremote.client.store.interfaces import IClientStore
from backupremote.client.store.migrations import MIGRATIONS
from backupremote.private import makePrivateFolder, privateFile
from backupremote.protocol.errors import CONFIG_INVALID, INTERNAL_ERROR, BackupRemoteError

#: The store's file name in the client's data folder.
STATE_FILE = "client.sqlite3"
#: Seconds a transaction waits for another process's to end.
BUSY_TIMEOUT = 30.0


def migrate(db: sqlite3.Connection, migrations: Sequence[str], where: str) -> int:
    """Run the migrations C{db} lacks, each in its own transaction; the version reached."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise BackupRemoteError(CONFIG_INVALID, (
            f"{where} was made by a newer backupremote (schema version {version}, this one "
            f"knows {len(migrations)}); upgrade backupremote, or restore the copy made "
            "before the upgrade"))
    for index in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[index].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {index + 1}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    return len(migrations)


def runTransaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], Any]) -> Any:
    """C{work(db)} between BEGIN IMMEDIATE and COMMIT, or ROLLBACK if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


@implementer(IClientStore)
class SQLiteClientStore:
    """The client's SQLite database, used from one worker thread."""

    def __init__(self, path: FilePath, reactor: IReactorFromThreads,
                 migrations: Sequence[str] = MIGRATIONS) -> None:
        self.path = path
        self._reactor = reactor
        self._migrations = migrations
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self.schemaVersion = 0
        self._openError: BaseException | None = None
        self._pool = ThreadPool(1, 1, name="backupremote-client-store")
        # a transaction cut short by the end of the process is rolled back by
        # SQLite; the thread must not hold the process up when it ends
        self._pool.threadFactory = _daemonThread
        self._pool.start()
        #: work asked for and not yet run, with the Deferred each answers
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]] = []
        self._pendingLock = threading.Lock()
        #: a batch is asked for or under way (the next waits for its answer)
        self._busy = False
        self._shutdown = None
        #: the reactor's shutdown, where it has one (a C{Clock} has none)
        self._core = IReactorCore(reactor, None)
        if self._core is not None:
            # an interrupted command (Ctrl-C) stops the reactor without closing us
            self._shutdown = self._core.addSystemEventTrigger("before", "shutdown", self.close)
        # the first task of the only thread: whatever is asked next waits for it
        self._inThread(self._open).addErrback(lambda failure: None)  # kept in _openError

    @classmethod
    def inFolder(cls, folder: FilePath, reactor: IReactorFromThreads) -> SQLiteClientStore:
        """The store of a client's data folder (created, 0700, if missing)."""
        makePrivateFolder(folder)
        return cls(folder.child(STATE_FILE), reactor)

    def _inThread(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._pool, function, *args)

    def _open(self) -> None:
        try:
            self._openAndMigrate()
        except BaseException as error:
            self._openError = error
            raise

    def _openAndMigrate(self) -> None:
        privateFile(self.path)
        for suffix in ("-wal", "-shm"):
            sidecar = self.path.siblingExtension(suffix)
            if sidecar.exists():
                sidecar.chmod(0o600)
        try:
            db = sqlite3.connect(self.path.path, timeout=BUSY_TIMEOUT, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as e:
            raise BackupRemoteError(INTERNAL_ERROR,
                                    f"cannot open the client store {self.path.path}: {e}") from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            self.schemaVersion = migrate(db, self._migrations, self.path.path)
        except BaseException:
            db.close()
            raise
        self._db = db

    def opened(self) -> Deferred[None]:
        return self.transact(lambda db: None)

    def transact(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        if self._closed:
            return _closedError(self.path)
        return self._enqueue(work)

    def _enqueue(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        with self._pendingLock:
            self._pending.append((work, done))
            if self._busy:
                return done  # the batch after the one under way takes it
            self._busy = True
        self._nextBatch()
        return done

    def _nextBatch(self) -> None:
        """
        Run what is pending, as one batch, once this reactor turn ends: so
        what one turn asks for is one commit (the jobs of 200 schedules due
        together: one fsync), not the few asked before the thread got the GIL
        and then the rest.
        """
        self._reactor.callFromThread(self._pool.callInThread, self._runPending)

    def _runPending(self) -> None:
        """In the thread: what is pending, as one batch, answered in one call."""
        with self._pendingLock:
            batch, self._pending = self._pending, []
        try:
            outcomes = self._runBatch([work for work, _ in batch])
        except BaseException:
            outcomes = [(False, Failure())] * len(batch)  # type: ignore[no-untyped-call]
        self._reactor.callFromThread(self._answer, batch, outcomes)

    def _answer(self, batch: list[tuple[Callable[[sqlite3.Connection], Any], Deferred[Any]]],
                outcomes: list[tuple[bool, Any]]) -> None:
        """
        In the reactor: fire the Deferreds of a batch, in order, in this one
        turn (not a turn each between reads of the network: the 200 jobs
        recorded by one commit send their 200 commands together); then the
        next batch, with what was asked meanwhile.
        """
        try:
            for (_, done), (ok, value) in zip(batch, outcomes):
                if not done.called:  # (cancelled by its caller: nobody waits for it)
                    done.callback(value) if ok else done.errback(value)
        finally:
            with self._pendingLock:
                self._busy = bool(self._pending)
            if self._busy:
                self._nextBatch()

    def _runBatch(self, works: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        """Each work in a savepoint of one transaction; (ok, result or Failure) each."""
        if self._openError is not None:
            opening = Failure(self._openError)  # type: ignore[no-untyped-call]
            return [(False, opening)] * len(works)
        db = self._db
        assert db is not None
        outcomes: list[tuple[bool, Any]] = []
        committed = 0  # outcomes already durable (before a transaction SQLite ended itself)
        try:
            db.execute("BEGIN IMMEDIATE")
            for work in works:
                if not db.in_transaction:
                    if outcomes and not outcomes[-1][0]:
                        # SQLite rolled the whole batch back after that error
                        failure = outcomes[-1][1]
                        outcomes[committed:] = [(False, failure)] * (len(outcomes) - committed)
                    committed = len(outcomes)
                    db.execute("BEGIN IMMEDIATE")
                db.execute("SAVEPOINT work")
                try:
                    result = work(db)
                except BaseException:
                    outcomes.append((False, Failure()))  # type: ignore[no-untyped-call]
                    if db.in_transaction:
                        db.execute("ROLLBACK TO work")
                        db.execute("RELEASE work")
                else:
                    db.execute("RELEASE work")
                    outcomes.append((True, result))
            if db.in_transaction:
                db.execute("COMMIT")
            elif outcomes and not outcomes[-1][0]:
                failure = outcomes[-1][1]
                outcomes[committed:] = [(False, failure)] * (len(outcomes) - committed)
        except BaseException:
            failure = Failure()  # type: ignore[no-untyped-call]
            if db.in_transaction:
                db.execute("ROLLBACK")
            outcomes[committed:] = [(False, failure)] * (len(works) - committed)
        return outcomes

    def close(self) -> Deferred[None]:
        if self._closed:
            return succeed(None)
        self._closed = True
        if self._core is not None and self._shutdown is not None:
            try:
                self._core.removeSystemEventTrigger(self._shutdown)
            except ValueError:
                pass  # running now: this is the shutdown
        # after every transaction asked before: they run, and are answered, in order
        closing = self._enqueue(lambda db: None).addBoth(
            lambda _: self._inThread(self._close))

        def stopThread(result: Any) -> Any:
            self._pool.stop()  # idle by now: joins at once
            return result

        return closing.addBoth(stopThread)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _daemonThread(*args: Any, **kwargs: Any) -> threading.Thread:
    return threading.Thread(*args, daemon=True, **kwargs)


def _closedError(path: FilePath) -> Deferred[Any]:
    failed: Deferred[Any] = Deferred()
    failed.errback(BackupRemoteError(INTERNAL_ERROR, f"the client store {path.path} is closed"))
    return failed
