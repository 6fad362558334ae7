"""
Files and folders only their owner may use.

Our programs (the two twistd plugins and the CLI) start with the umask
L{PRIVATE_UMASK}, so whatever they create is 0600 (files) or 0700
(folders). An application that embeds the library keeps its own umask, so
what the library creates itself is given its mode explicitly: folders with
L{makePrivateFolder}, the server's SQLite store with L{privateFile}, and new
files through L{backupremote.filewriting}. A key or a secret that group or
others can read is refused at start-up with L{refuseShared}, not silently
fixed: it may have been copied already, and its owner should know.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only named in annotations: the CLI starts without it
    from twisted.python.filepath import FilePath

#: group and others get no permission at all
PRIVATE_UMASK = 0o077


def usePrivateUmask() -> int:
    """Set this process's umask to L{PRIVATE_UMASK}; return the previous one."""
    return os.umask(PRIVATE_UMASK)


def makePrivateFolder(folder: FilePath) -> None:
    """
    Create C{folder} and its missing parents, each with mode 0700,
    whatever the umask. Folders that exist already are left as they are.
    """
    missing = []
    current = folder
    while not current.exists() and current.parent() != current:
        missing.append(current)
        current = current.parent()
    for path in reversed(missing):
        try:
            os.mkdir(path.path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path.path, 0o700)


def privateFile(path: FilePath) -> None:
    """
    Make C{path} exist with mode 0600, whatever the umask: created empty if
    missing, tightened if an earlier version made it looser.

    Made before SQLite opens a database, it also gives the database's
    C{-wal} and C{-shm} files mode 0600: SQLite creates them with the mode
    of the database file.
    """
    descriptor = os.open(path.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_IMODE(os.fstat(descriptor).st_mode) != 0o600:
            os.fchmod(descriptor, 0o600)
    finally:
        os.close(descriptor)


def refuseShared(path: FilePath, what: str) -> None:
    """
    Raise C{CONFIG_INVALID} if group or others have any permission on
    C{path}, naming it and the command that fixes it. A file that cannot be
    examined is left for its reader to report.
    """
    try:
        mode = stat.S_IMODE(os.stat(path.path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

        raise BackupRemoteError(
            CONFIG_INVALID,
            f"the {what} {path.path} is open to group or others (mode {mode:04o}); "
            f"make it private with: chmod 600 {path.path}")
