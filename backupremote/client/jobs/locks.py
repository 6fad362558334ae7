"""
One driver per job across processes: the daemon and a CLI command may share
a client's data folder, and must not both drive one run.

Each job being driven holds an C{flock} on C{locks/<runId>.lock} in the
data folder; the kernel lets go of it when its process ends, however it
ends (C{kill -9} included), so a lock never outlives its holder.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
from collections.abc import Callable

from twisted.python.filepath import FilePath

from backupremote.private import makePrivateFolder
from backupremote.protocol.errors import CONFLICT, BackupRemoteError

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


class JobLocks:
    """C{flock}s on one file per job in C{folder}."""

    def __init__(self, folder: FilePath) -> None:
        self.folder = folder

    def _path(self, runId: str) -> FilePath:
        name = runId if _PLAIN.fullmatch(runId) else hashlib.sha256(
            runId.encode("utf-8")).hexdigest()
        return self.folder.child(name.replace(":", "_") + ".lock")

    def acquire(self, runId: str) -> Callable[[], None]:
        """
        Lock C{runId}'s job; returns the function that lets it go.

        @raise BackupRemoteError: C{CONFLICT} if another process holds it.
        """
        makePrivateFolder(self.folder)
        path = self._path(runId)
        while True:
            descriptor = os.open(path.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                raise BackupRemoteError(CONFLICT, (
                    f"run {runId} is being handled by another backupremote process of this "
                    "client (its daemon, or another command)"), hint=(
                    "Let that process finish the run (the daemon's log says when), or stop it "
                    "and run this command again: it continues where the run stopped.")
                ) from None
            # the holder before us may have removed the file as it let go:
            # then this lock is on a file nobody else will find; try again
            try:
                same = os.stat(path.path).st_ino == os.fstat(descriptor).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(descriptor)

        def release() -> None:
            try:
                os.unlink(path.path)  # while still locked: see the check above
            except OSError:
                pass
            os.close(descriptor)

        return release

    def held(self, runId: str) -> bool:
        """Whether another process holds C{runId}'s lock now (this one holds none)."""
        return isLocked(self._path(runId))


def isLocked(path: FilePath) -> bool:
    """Whether some process holds an C{flock} on C{path} now."""
    try:
        descriptor = os.open(path.path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing lets go of a lock taken just now
    return False


class DaemonLock:
    """
    The client daemon's C{flock} on C{.daemon} in the locks folder, held
    while it runs: a CLI command asks L{running} whether a daemon will take
    up the jobs it records, and a second daemon on one data folder is refused.
    """

    def __init__(self, folder: FilePath) -> None:
        self.path = folder.child(".daemon")
        self._descriptor: int | None = None

    def running(self) -> bool:
        """Whether a client daemon holds the lock (this process does not)."""
        return self._descriptor is None and isLocked(self.path)

    def acquire(self) -> None:
        """
        Take the lock for this process.

        @raise BackupRemoteError: C{CONFLICT} if another daemon holds it.
        """
        makePrivateFolder(self.path.parent())
        descriptor = os.open(self.path.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise BackupRemoteError(CONFLICT, (
                f"another client daemon runs on the data folder of {self.path.parent().path}"
                ), hint="Stop the other daemon, or give this one its own [client] data_dir."
            ) from None
        self._descriptor = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
