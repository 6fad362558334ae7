"""
The transfer manifest's chunk digests, made while the artifact is written.

The sink already holds every byte of the artifact on its way to disk; a
SHA-256 of each transfer chunk (and of the whole file) costs little there,
in a thread that mostly waits for the dump. Made afterwards, they were a
second read of the artifact at finalizing (1.7 s per GiB). Verification
then reads the file back and checks the run's checksum: what was digested
is what is on disk.
"""

from __future__ import annotations

import hashlib
import os

from attrs import frozen
from twisted.python.filepath import FilePath

from backupremote.filewriting import writeAll
from backupremote.protocol.transfers import CHUNK_SIZE

#: Added to the partial artifact's name for its digests file.
CHUNKS_SUFFIX = ".chunks"


@frozen
class ChunkDigests:
    """The raw digests file (32 bytes per chunk) and the whole file's SHA-256."""

    path: FilePath
    sha256: str
    sizeBytes: int


class ChunkDigester:
    """
    Fed the artifact's bytes in order (any piece sizes), writes one SHA-256
    per C{chunkSize} bytes to the new file C{path}; C{finish} gives the
    L{ChunkDigests}. C{wholeFromSink}: the sink's own checksum is SHA-256,
    so the whole-file digest is the sink's (given to C{finish}).
    """

    def __init__(self, path: str, wholeFromSink: bool, chunkSize: int = CHUNK_SIZE) -> None:
        self._path = path
        self._chunkSize = chunkSize
        self._whole = None if wholeFromSink else hashlib.sha256()
        self._chunk = hashlib.sha256()
        self._inChunk = 0
        self._size = 0
        self._digests = bytearray()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                       | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._size += len(view)
        if self._whole is not None:
            self._whole.update(view)
        while view:
            take = min(self._chunkSize - self._inChunk, len(view))
            self._chunk.update(view[:take])
            self._inChunk += take
            view = view[take:]
            if self._inChunk == self._chunkSize:
                self._endChunk()
        if len(self._digests) >= 1 << 16:
            self._flush()

    def _endChunk(self) -> None:
        self._digests += self._chunk.digest()
        self._chunk = hashlib.sha256()
        self._inChunk = 0

    def _flush(self) -> None:
        assert self._fd is not None
        writeAll(self._fd, self._digests)
        self._digests = bytearray()

    def finish(self, sinkDigest: str) -> ChunkDigests:
        """The last chunk's digest written, the file closed: what was made."""
        if self._inChunk:
            self._endChunk()
        self._flush()
        assert self._fd is not None
        # Durable, so that the manifest can rename it into place as it is;
        # and newer than the artifact's last write (closed before this):
        # the manifest trusts these digests only if nothing changed it since.
        os.fsync(self._fd)
        os.utime(self._fd)
        self.close()
        whole = sinkDigest if self._whole is None else self._whole.hexdigest()
        return ChunkDigests(FilePath(self._path), whole, self._size)

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
