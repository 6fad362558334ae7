"""L{WalFlush}: the fsync a FULL commit does, of the WAL file, in a worker thread."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.state.durability import WalFlush


class WalFlushTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = FilePath(self.mktemp())
        self.calls: list[tuple[Any, tuple[Any, ...]]] = []

    def runInThread(self, function: Any, *args: Any) -> Deferred[Any]:
        self.calls.append((function, args))
        return succeed(function(*args))

    def test_fsyncsTheWalFileInAThread(self) -> None:
        flush = WalFlush(self.path, self.runInThread)
        self.addCleanup(flush.close)
        self.assertFalse(flush.available(), "no WAL file before the first write")
        db = sqlite3.connect(self.path.path, isolation_level=None)
        self.addCleanup(db.close)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE t (a)")
        self.assertTrue(flush.available())
        self.successResultOf(flush.flush())
        [(function, (fd,))] = self.calls
        self.assertIs(function, os.fsync)
        self.assertEqual(os.fstat(fd).st_ino, os.stat(self.path.path + "-wal").st_ino)
        flush.close()
        self.assertRaises(OSError, os.fstat, fd)
