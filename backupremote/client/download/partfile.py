"""
What a download keeps on disk beside its target until it is complete.

For a target C{NAME} in a folder:

    NAME.part           the data, written at chunk offsets
    .NAME.hashes        the manifest's chunk digests (32 raw bytes each)
    .NAME.progress      {"sha256": whole-file hash, "chunks": written prefix}, fsynced
    .NAME.lock          flock()ed by the download that owns these files

The progress file binds the other files to one artifact (its whole-file
hash); the data itself is never trusted: a resume re-checks every chunk on
disk against its digest. Every method here blocks: call them in a thread.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.filewriting import fsyncFolder, replaceFile
from backupremote.private import makePrivateFolder
from backupremote.protocol.errors import CONFLICT, BackupRemoteError
from backupremote.protocol.transfers import CHUNK_SIZE, FileEntry

DIGEST_SIZE = 32


def fileSha256(path: FilePath) -> str:
    digest = hashlib.sha256()
    with open(path.path, "rb", buffering=0) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PartFile:
    """The C{.part} file of one download and its helper files."""

    def __init__(self, directory: FilePath, name: str, entry: FileEntry) -> None:
        self.entry = entry
        self.target = directory.child(name)
        self.part = directory.child(name + ".part")
        self.hashes = directory.child(f".{name}.hashes")
        self.progress = directory.child(f".{name}.progress")
        self.lock = directory.child(f".{name}.lock")
        self.descriptor: int | None = None
        self._lockDescriptor: int | None = None

    # Ownership

    def acquire(self) -> None:
        """Lock the download of this name in this folder, or refuse (C{CONFLICT})."""
        makePrivateFolder(self.target.parent())
        descriptor = os.open(self.lock.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise BackupRemoteError(
                CONFLICT, f"another download of {self.target.basename()} into "
                          f"{self.target.parent().path} is running") from None
        self._lockDescriptor = descriptor

    def close(self) -> None:
        """Close the data file and give the lock up (the files stay for a resume)."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
        if self._lockDescriptor is not None:
            os.close(self._lockDescriptor)
            self._lockDescriptor = None

    # State

    def _recorded(self) -> dict[str, Any] | None:
        try:
            recorded = json.loads(self.progress.getContent())
        except (OSError, ValueError):
            return None
        if (not isinstance(recorded, dict) or recorded.get("sha256") != self.entry.sha256
                or not isinstance(recorded.get("chunks"), int)):
            return None
        return recorded

    def savedDigests(self) -> bytes | None:
        """
        The digests kept by an earlier attempt at this same artifact; if the
        files belong to another artifact (or none), they are removed.
        """
        if self._recorded() is None:
            self.discard()
            return None
        try:
            digests = self.hashes.getContent()
        except OSError:
            return None
        return digests if len(digests) == self.entry.chunkCount * DIGEST_SIZE else None

    def saveDigests(self, digests: bytes) -> None:
        replaceFile(self.hashes, digests)
        self.recordProgress(0)  # binds the files to this artifact; the data is re-checked

    def recordProgress(self, chunks: int) -> None:
        """Durably note that the first C{chunks} chunks of C{.part} are written."""
        replaceFile(self.progress, json.dumps({"sha256": self.entry.sha256,
                                            "chunks": chunks}).encode("ascii"))

    def recheck(self, digests: bytes) -> tuple[int, Any]:
        """
        Open C{.part} (if it is not open yet) and verify the chunks in it
        from the start: (the count of good chunks before the first bad or
        missing one, the SHA-256 of those chunks, ready to be continued).
        """
        if self.descriptor is None:
            self.descriptor = os.open(self.part.path,
                                      os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        whole = hashlib.sha256()
        size = os.fstat(self.descriptor).st_size
        good = 0
        while good < self.entry.chunkCount and good * CHUNK_SIZE < size:
            chunk = os.pread(self.descriptor, CHUNK_SIZE, good * CHUNK_SIZE)
            if hashlib.sha256(chunk).digest() != digests[good * DIGEST_SIZE:(good + 1) * DIGEST_SIZE]:
                break
            whole.update(chunk)
            good += 1
        return good, whole

    # The end

    def finish(self) -> FilePath:
        """Make C{.part} the target: truncate, fsync, rename, fsync the folder, tidy."""
        assert self.descriptor is not None
        os.ftruncate(self.descriptor, self.entry.sizeBytes)
        os.fsync(self.descriptor)
        os.close(self.descriptor)
        self.descriptor = None
        if self.target.exists():
            raise BackupRemoteError(CONFLICT, f"{self.target.path} appeared during the download")
        os.rename(self.part.path, self.target.path)
        fsyncFolder(self.target.parent())
        for helper in (self.hashes, self.progress):
            helper.remove()
        self.lock.remove()  # still held: a waiting download finds the target
        fsyncFolder(self.target.parent())
        return self.target

    def discard(self) -> None:
        """Remove the data and helper files (not the lock)."""
        for path in (self.part, self.hashes, self.progress):
            if path.exists():
                path.remove()
