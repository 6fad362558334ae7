"""
Waiting for the disk off the reactor thread.

A commit in WAL mode with C{synchronous=FULL} is the commit's write to the
C{-wal} file followed by an fsync of that file, on the thread that commits:
the server's reactor thread. L{WalFlush} lets a store commit without the
fsync (C{synchronous=NORMAL}) and then fsync the same file in a worker
thread: once it returns, every commit made before is on the disk, as after
a FULL commit (a checkpoint in between fsyncs the WAL itself first). The
reactor admits other runs meanwhile, and concurrent flushes share the
disk's work. 20 servers admitting 10 runs each at once spent 38% of an
admission's time on that fsync (issue 11's scheduler benchmark, py-spy).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath

RunInThread = Callable[..., "Deferred[Any]"]


class WalFlush:
    """fsyncs a SQLite database's C{-wal} file in a worker thread."""

    def __init__(self, database: FilePath[str], runInThread: RunInThread) -> None:
        self._wal = database.siblingExtension("-wal")
        self._runInThread = runInThread
        #: kept open for the store's life: closing a file SQLite also opened
        #: could drop its locks (POSIX locks are per process and file)
        self._fd: int | None = None

    def available(self) -> bool:
        """Whether the WAL file exists (it does once the connection has written in WAL mode)."""
        if self._fd is None:
            try:
                self._fd = os.open(self._wal.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return False
        return True

    def flush(self) -> Deferred[Any]:
        """Fires once every commit made so far is on the disk."""
        assert self._fd is not None, "call available() first"
        return self._runInThread(os.fsync, self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
