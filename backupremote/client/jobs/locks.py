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
