"""
Test twins of backupremote's parts, for our tests and for applications
that embed backupremote (treq's C{testing} pattern).

Each twin implements the same Interface as the real thing, and one
contract test suite runs against both (see C{tests/}), so a test that
passes with the twin says something true of the real one.

    store = MemoryClientStore()                # an IClientStore, synchronous
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from backupremote.client.store import MIGRATIONS, IClientStore, migrate
from backupremote.client.store.sqlite import runTransaction
from backupremote.protocol.errors import INTERNAL_ERROR, BackupRemoteError


@implementer(IClientStore)
class MemoryClientStore:
    """
    The client store in memory: the same schema and SQL as
    L{backupremote.client.store.SQLiteClientStore}, but each transaction
    runs at once in the calling thread, so tests on a C{Clock} see its
    result without a reactor turn. A "restarted" client is a new runner on
    the same instance: what was committed is still there.
    """

    def __init__(self, migrations: Sequence[str] = MIGRATIONS) -> None:
        self._db: sqlite3.Connection | None = sqlite3.connect(":memory:", isolation_level=None)
        self._db.execute("PRAGMA foreign_keys=ON")
        self.schemaVersion = migrate(self._db, migrations, "the in-memory client store")
        #: how many transactions committed (a step of a job is one)
        self.commits = 0

    def opened(self) -> Deferred[None]:
        return succeed(None)

    def transact(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        if self._db is None:
            return fail(BackupRemoteError(INTERNAL_ERROR, "the client store is closed"))
        try:
            result = runTransaction(self._db, work)
        except BaseException:
            return fail()
        self.commits += 1
        return succeed(result)

    def close(self) -> Deferred[None]:
        if self._db is not None:
            self._db.close()
            self._db = None
        return succeed(None)


__all__ = ["MemoryClientStore"]
