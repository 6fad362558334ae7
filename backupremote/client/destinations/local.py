"""
A folder on this machine (or a mounted share) as a destination.

Files are written under a temporary name in their folder (0600; new date
folders 0700), fsynced, the written pages dropped from the page cache so
that the read-back reads what reached the disk, and renamed into place with
the folder fsynced: a crash at any instant leaves either no file or the
whole verified one under the final name. The root must exist already: a
missing mount point would otherwise fill the disk below it.

The disk work runs in the reactor's thread pool. A put copies inside the
kernel where it can (C{copy_file_range}, then C{sendfile} between file
systems, then a read/write loop, as C{cp} does) while a second pool job
computes the SHA-256 of the source, unless the put was handed it (a
L{KnownDigest}: then the copy is the only job); the read-back then proves
that the copy holds the bytes of that SHA-256. Cancelling an upload stops both jobs
between blocks and removes the temporary file.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import threading
from collections.abc import Callable, Coroutine
from datetime import datetime, timezone
from typing import Any, TypeVar

from twisted.internet.defer import CancelledError, Deferred, DeferredList, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.interface import (
    DigestCounter,
    IDestination,
    IUploadJournal,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    RemoteFile,
)
from backupremote.client.destinations.names import (
    PROBE_PREFIX,
    checkAnyName,
    checkName,
    isFolderName,
    isListable,
    isTemporary,
    splitName,
    temporaryName,
)
from backupremote.client.destinations.pool import inPool, inPoolStoppable, stoppable
from backupremote.filewriting import writeAll
from backupremote.protocol.errors import (
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    INTERNAL_ERROR,
    VERIFICATION_FAILED,
    BackupRemoteError,
)

T = TypeVar("T")

_log = Logger()

#: Bytes per read and write: large enough for full disk speed, small enough
#: to keep four parallel uploads well under the client's memory budget.
BUFFER_SIZE = 1 << 20

#: Bytes per kernel copy call: cancellation and progress come between calls.
COPY_CHUNK = 8 << 20

#: Bytes per read and write of the last-resort copier: a read/write loop
#: through a 1 MiB buffer took 1.6-2.2 CPU s per GiB here, through 256 KiB
#: 0.42-0.47 s (docs/benchmarks.md).
COPY_BUFFER_SIZE = 256 << 10

FILE_MODE = 0o600
FOLDER_MODE = 0o700

#: Copies up to C{count} bytes from offset C{offset} of the first descriptor
#: to the second (at its own position, which it advances); returns how many
#: (0 at the end of the source).
Copier = Callable[[int, int, int, int], int]


def copyFileRange(reading: int, writing: int, offset: int, count: int) -> int:
    """In the kernel, reflinked where the file system can (C{cp}'s first choice)."""
    return os.copy_file_range(reading, writing, count, offset)


def sendFile(reading: int, writing: int, offset: int, count: int) -> int:
    """In the kernel between page caches: works across file systems (C{EXDEV} above)."""
    return os.sendfile(writing, reading, offset, count)


def readWrite(reading: int, writing: int, offset: int, count: int) -> int:
    """Through a buffer: works everywhere."""
    data = os.pread(reading, min(count, COPY_BUFFER_SIZE), offset)
    writeAll(writing, data, os.write)
    return len(data)


#: Tried in order; a copier that cannot handle the pair of files (one of
#: L{UNSUPPORTED}, or nothing from a source that has bytes left, as for
#: files the kernel generates) hands over to the next at the same offset.
COPIERS: tuple[Copier, ...] = (copyFileRange, sendFile, readWrite)

UNSUPPORTED = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL,
                         errno.EBADF, errno.ETXTBSY, errno.EPERM})


def _osError(location: str, what: str, e: OSError) -> BackupRemoteError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return BackupRemoteError(DESTINATION_FULL, f"{location}: no space left while {what}")
    if e.errno == errno.ENOENT:
        return BackupRemoteError(DESTINATION_NOT_FOUND, f"{location}: {what}: no such file")
    return BackupRemoteError(DESTINATION_REFUSED, f"{location}: {what}: {e.strerror}")


def _fsyncFolder(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _dropCache(descriptor: int) -> None:
    """Forget the file's cached pages, so the next read comes from the disk."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)


@implementer(IDestination)
class LocalFolderDestination:
    """
    The folder C{root}: C{NAME} is C{root/NAME}, C{DATE/NAME} is
    C{root/DATE/NAME}.

    @param reactor: runs the disk work in its thread pool
        (L{IReactorThreads}) and gets the results back
        (L{IReactorFromThreads}).
    @param copiers: how a put copies, tried in order (see L{COPIERS}).
    """

    type = "local"

    def __init__(self, reactor: IReactorThreads, root: FilePath,
                 copiers: tuple[Copier, ...] = COPIERS) -> None:
        self._reactor = reactor
        self.root = root
        self._copiers = copiers
        self._working: set[Deferred[None]] = set()
        self.location = f"local folder {root.path}"

    def _inThread(self, function: Callable[..., T], *args: Any) -> Deferred[T]:
        return inPool(self._reactor, function, *args)

    # Paths

    def _path(self, name: str) -> str:
        return os.path.join(self.root.path, *name.split("/"))

    def _checkRoot(self) -> None:
        try:
            mode = os.stat(self.root.path).st_mode
        except OSError as e:
            raise BackupRemoteError(
                DESTINATION_REFUSED,
                f"{self.location}: the folder cannot be used ({e.strerror}); create "
                "it (and mount what belongs there) first") from None
        if not stat.S_ISDIR(mode):
            raise BackupRemoteError(DESTINATION_REFUSED, f"{self.location}: not a folder")

    def _folderFor(self, name: str) -> str:
        """The folder C{name} goes in, created (0700) if it is a new date folder."""
        self._checkRoot()
        folder, _ = splitName(name)
        if folder is None:
            return self.root.path
        path = self._path(folder)
        try:
            os.mkdir(path, FOLDER_MODE)
        except FileExistsError:
            pass
        except OSError as e:
            raise _osError(self.location, f"creating {folder}", e) from None
        else:
            _fsyncFolder(self.root.path)
        if not os.path.isdir(path) or os.path.islink(path):
            raise BackupRemoteError(DESTINATION_REFUSED, f"{self.location}: {folder} is not a folder")
        return path

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return self._inThread(self._testConnection)

    def _testConnection(self, stop: threading.Event) -> None:
        self._checkRoot()
        probe = os.path.join(self.root.path, PROBE_PREFIX + secrets.token_hex(8))
        try:
            descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                writeAll(descriptor, b"backupremote probe\n")
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.unlink(probe)
        except OSError as e:
            raise _osError(self.location, "writing a probe file", e) from None

    def put(self, source: FilePath, name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        try:
            temporary = temporaryName(name)
        except BackupRemoteError:
            return fail()
        reports: Callable[[int], None] | None = None
        if progress is not None:
            report = progress
            reports = lambda sent: self._reactor.callFromThread(report, sent)  # noqa: E731
        return stoppable(lambda stop: self._tracked(
            self._putBoth(stop, source, name, temporary, reports, known)))

    async def _tracked(self, work: Coroutine[Any, Any, T]) -> T:
        """Run C{work}, which L{close} waits for even after a cancellation."""
        finished: Deferred[None] = Deferred()
        self._working.add(finished)
        try:
            return await work
        finally:
            self._working.discard(finished)
            finished.callback(None)

    async def _putBoth(self, stop: threading.Event, source: FilePath[str], name: str,
                       temporary: str, progress: Callable[[int], None] | None,
                       known: KnownDigest | None) -> PendingUpload:
        """
        The copy and the source's SHA-256 (unless C{known}), each in a pool
        job of its own (neither waits for the other, so a busy pool cannot
        deadlock them); both always run to their end (or C{stop}) before
        this returns, and a temporary file the copy left is removed unless
        the upload stands.
        """
        failed: list[BaseException] = []

        def stopOthers(failure: Any) -> Any:
            failed.append(failure.value)
            stop.set()
            return failure

        copying = inPoolStoppable(self._reactor, stop, self._put, source, name, temporary,
                                  progress).addErrback(stopOthers)
        jobs = [copying]
        if known is None:
            jobs.append(inPoolStoppable(self._reactor, stop, self._hashSource,
                                        source).addErrback(stopOthers))
        outcomes = await DeferredList(jobs, consumeErrors=True)
        copied, size = outcomes[0]
        if known is None:
            counter = outcomes[1][1]
        else:
            counter = DigestCounter(known)
            counter.size = size if copied else 0
        if copied and (failed or stop.is_set() or counter.size != size):
            try:
                await inPoolStoppable(self._reactor, threading.Event(), self._delete, temporary)
            except Exception as e:
                _log.warn("could not remove {temporary} from {location}: {error}",
                          temporary=temporary, location=self.location, error=str(e))
        for error in failed:
            if not isinstance(error, CancelledError):
                raise error
        if failed or stop.is_set():
            raise CancelledError(f"the upload of {temporary} was cancelled")
        if counter.size != size:
            raise BackupRemoteError(
                VERIFICATION_FAILED,
                f"the local file {source.path} changed while it was copied to {self.location} "
                f"({size} bytes copied, {counter.size} read for its SHA-256)")
        return PendingUpload(name, temporary, size, counter.hexdigest())

    def _put(self, stop: threading.Event, source: FilePath, name: str, temporary: str,
             progress: Callable[[int], None] | None) -> int:
        reading = self._openSource(source)
        try:
            folder = self._folderFor(name)
            target = self._path(temporary)
            try:
                writing = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                  FILE_MODE)
            except OSError as e:
                raise _osError(self.location, f"creating {temporary}", e) from None
            try:
                size = self._copy(stop, reading, writing, temporary, progress)
                os.fsync(writing)
                _dropCache(writing)
            except BaseException as e:
                os.close(writing)
                os.unlink(target)
                if isinstance(e, OSError):
                    raise _osError(self.location, f"writing {temporary}", e) from None
                raise
            os.close(writing)
            _fsyncFolder(folder)
        finally:
            os.close(reading)
        return size

    def _openSource(self, source: FilePath[str]) -> int:
        try:
            return os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise BackupRemoteError(
                INTERNAL_ERROR, f"cannot read the local file {source.path}: {e.strerror}"
            ) from None

    def _copy(self, stop: threading.Event, reading: int, writing: int, temporary: str,
              progress: Callable[[int], None] | None) -> int:
        """Copy all of C{reading} to C{writing} with the first copier that can; the bytes copied."""
        size = os.fstat(reading).st_size
        offset = 0
        copiers = list(self._copiers)
        while True:
            if stop.is_set():
                raise CancelledError(f"the upload of {temporary} was cancelled")
            copier = copiers[0]
            try:
                count = copier(reading, writing, offset, COPY_CHUNK)
            except OSError as e:
                if e.errno in UNSUPPORTED and len(copiers) > 1:
                    copiers.pop(0)
                    continue
                raise
            if not count:
                if offset < size and len(copiers) > 1:
                    copiers.pop(0)
                    continue
                return offset
            offset += count
            if progress is not None:
                progress(offset)

    def _hashSource(self, stop: threading.Event, source: FilePath[str]) -> DigestCounter:
        """The SHA-256 and size of C{source}, read on its own descriptor."""
        reading = self._openSource(source)
        try:
            return _digestOf(reading, stop, f"the SHA-256 of {source.path}")
        except OSError as e:
            raise BackupRemoteError(
                INTERNAL_ERROR, f"cannot read the local file: {e.strerror}") from None
        finally:
            os.close(reading)

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return self._inThread(self._readBack, name)

    def _readBack(self, stop: threading.Event, name: str) -> ReadBack:
        checkAnyName(name)
        self._checkRoot()
        try:
            descriptor = os.open(self._path(name), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as e:
            raise _osError(self.location, f"reading {name}", e) from None
        try:
            return _digestOf(descriptor, stop, f"the read-back of {name}").readBack()
        except OSError as e:
            raise _osError(self.location, f"reading {name}", e) from None
        finally:
            os.close(descriptor)

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return self._inThread(self._complete, upload)

    def _complete(self, stop: threading.Event, upload: PendingUpload) -> None:
        checkName(upload.name)
        checkAnyName(upload.temporaryName)
        if not isTemporary(upload.temporaryName) or (
                splitName(upload.temporaryName)[0] != splitName(upload.name)[0]):
            raise BackupRemoteError(
                DESTINATION_REFUSED, f"{upload.temporaryName} is not a temporary name "
                                     f"beside {upload.name}")
        self._checkRoot()
        try:
            os.replace(self._path(upload.temporaryName), self._path(upload.name))
        except OSError as e:
            raise _osError(self.location, f"renaming {upload.temporaryName}", e) from None
        folder, _ = splitName(upload.name)
        _fsyncFolder(self._path(folder) if folder else self.root.path)

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return self._inThread(self._listFiles)

    def _listFiles(self, stop: threading.Event) -> list[RemoteFile]:
        self._checkRoot()
        found: list[RemoteFile] = []
        try:
            self._scan(self.root.path, None, found)
        except OSError as e:
            raise _osError(self.location, "listing", e) from None
        return found

    def _scan(self, path: str, folder: str | None, found: list[RemoteFile]) -> None:
        with os.scandir(path) as entries:
            for entry in entries:
                name = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if folder is None and isFolderName(entry.name):
                        self._scan(entry.path, entry.name, found)
                elif entry.is_file(follow_symlinks=False) and isListable(name):
                    info = entry.stat(follow_symlinks=False)
                    found.append(RemoteFile(
                        name, info.st_size, datetime.fromtimestamp(info.st_mtime, timezone.utc),
                        isTemporary(name)))

    def delete(self, name: str) -> Deferred[None]:
        return self._inThread(self._delete, name)

    def _delete(self, stop: threading.Event, name: str) -> None:
        checkAnyName(name)
        self._checkRoot()
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            return
        except OSError as e:
            raise _osError(self.location, f"removing {name}", e) from None
        folder, _ = splitName(name)
        _fsyncFolder(self._path(folder) if folder else self.root.path)

    def close(self) -> Deferred[None]:
        """Wait for the puts still cleaning up after a cancellation (nothing else stays open)."""
        if not self._working:
            return succeed(None)
        return DeferredList(list(self._working)).addCallback(lambda _: None)


def _digestOf(descriptor: int, stop: threading.Event, what: str) -> DigestCounter:
    """The SHA-256 and size of what C{descriptor} reads to its end; C{stop} cancels C{what}."""
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    counter = DigestCounter()
    buffer = bytearray(BUFFER_SIZE)
    view = memoryview(buffer)
    while True:
        if stop.is_set():
            raise CancelledError(f"{what} was cancelled")
        count = os.readv(descriptor, [buffer])
        if not count:
            return counter
        counter.update(view[:count])
