"""
Creating files that must not exist yet, with their mode set from the start:
0600 unless a caller asks otherwise (see L{backupremote.private}).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from twisted.python.filepath import FilePath

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

PRIVATE = 0o600

#: The write function: C{os.write}'s signature (tests slow it down).
Writer = Callable[[int, memoryview], int]


def writeAll(fd: int, data: bytes | memoryview, write: Writer = os.write) -> None:
    """Write all of C{data} to C{fd} (a file or a blocking pipe)."""
    view = memoryview(data)
    while view:
        view = view[write(fd, view):]


def writeNewFile(path: FilePath | str | os.PathLike[str], data: bytes, mode: int = PRIVATE) -> None:
    """
    Create C{path} with exactly C{mode} (whatever the umask) and write
    C{data}; a file never exists with looser permissions, even briefly.

    @raise BackupRemoteError: C{CONFIG_INVALID} if C{path} exists or cannot
        be created.
    """
    name = path.path if isinstance(path, FilePath) else os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(name, flags, mode)
    except FileExistsError:
        raise BackupRemoteError(
            CONFIG_INVALID, f"refusing to overwrite the existing file {name}"
        ) from None
    except OSError as e:
        raise BackupRemoteError(CONFIG_INVALID, f"cannot create {name}: {e.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(name)
        raise


def writePrivateFile(path: FilePath | str | os.PathLike[str], data: bytes) -> None:
    """L{writeNewFile} with mode 0600: keys, secrets."""
    writeNewFile(path, data, PRIVATE)


def replaceFile(path: FilePath, data: bytes, mode: int = PRIVATE) -> None:
    """
    Put C{data} at C{path} atomically: write a temporary sibling, fsync it,
    rename it over C{path}. Readers see the old content or the new, never a
    torn one.
    """
    temporary = path.siblingExtension(".tmp")
    descriptor = os.open(temporary.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        writeAll(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary.path, path.path)


def fsyncFolder(folder: FilePath) -> None:
    """Make a rename or a new file in C{folder} durable."""
    descriptor = os.open(folder.path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
