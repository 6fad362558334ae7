"""
Reading the artifact back, and looking at the decompressed stream.

L{ArtifactReader} reads the artifact file once, hashing it, and hands each
chunk on: to a decompressor's stdin (L{PipeFeed}), to zstd decompressing in
the same thread, or straight to a L{StreamInspector} when nothing needs
decompressing (or, for zip, after a second pass that inflates the member
and checks its CRC). The inspector
keeps the head and the tail of the decompressed stream for the cheap engine
checks, forwards it to a checking program's stdin (which may stop reading
early: C{pg_restore -l} does, and the rest is still drained so that the
whole stream is decompressed), and copies it to a scratch file when the
check needs a file (SQLite).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import closing
from typing import Protocol

import zstandard

from backupremote.filewriting import writeAll
from backupremote.server.engines.dumps import HEAD_BYTES, TAIL_BYTES
from backupremote.server.machinery.compressors import zipMember
from backupremote.server.pipeline.sink import CHUNK_SIZE, ChunkReader, Stopped
from backupremote.server.pipeline.threads import StopFlag
from backupremote.server.pipeline.zstdframes import FrameWalker


class Consumer(Protocol):
    def feed(self, data: bytes | memoryview) -> None: ...

    def finish(self) -> None: ...


class PipeFeed:
    """Writes chunks to a pipe (a child's stdin); a reader that left is remembered, not fatal."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self.broken = False

    def feed(self, data: bytes | memoryview) -> None:
        if self._fd is None:
            return
        try:
            writeAll(self._fd, data)
        except BrokenPipeError:
            self.broken = True
            self.finish()

    def finish(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class StreamInspector:
    """
    Looks at the decompressed stream: counts it, keeps its first
    L{HEAD_BYTES} and last L{TAIL_BYTES}, forwards it to C{forward} and
    copies it to the new file C{copyPath}, as asked.
    """

    def __init__(self, forward: int | None = None, copyPath: str | None = None) -> None:
        self.byteCount = 0
        self.head = b""
        self._tail = bytearray()
        self._forward = PipeFeed(forward) if forward is not None else None
        self._copy: int | None = None
        if copyPath is not None:
            self._copy = os.open(copyPath, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    @property
    def tail(self) -> bytes:
        return bytes(self._tail[-TAIL_BYTES:])

    @property
    def forwardBroken(self) -> bool:
        return self._forward is not None and self._forward.broken

    def feed(self, data: bytes | memoryview) -> None:
        """Look at C{data} (a view may be reused by the caller: nothing keeps it)."""
        self.byteCount += len(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        self._tail += data[-TAIL_BYTES:]
        if len(self._tail) > 2 * TAIL_BYTES:
            del self._tail[:-TAIL_BYTES]
        if self._forward is not None:
            self._forward.feed(data)
        if self._copy is not None:
            writeAll(self._copy, data)

    def finish(self) -> None:
        if self._forward is not None:
            self._forward.finish()
        if self._copy is not None:
            copy, self._copy = self._copy, None
            os.close(copy)

    def drain(self, fd: int, stop: StopFlag) -> int:
        """Inspect everything readable on C{fd} (taken over) until its end (in a thread)."""
        try:
            # no coalescing pause: a decompressor writes faster than the pipe
            # drains, and a pause would stall it (it does help the dump sink)
            reader = ChunkReader(fd, stop, coalesce=0)
            while data := reader.read():
                self.feed(data)
        finally:
            os.close(fd)
            self.finish()
        return self.byteCount


class ArtifactReader:
    """
    Reads the artifact at C{path} once, hashing it (in a thread); C{bytesRead}
    is for progress. A zip member that does not inflate or whose CRC is
    wrong is reported in C{unpackError}, not raised.
    """

    def __init__(self, path: str, checksum: str, stop: StopFlag,
                 chunkSize: int = CHUNK_SIZE) -> None:
        self._path = path
        self._hash = hashlib.new(checksum)
        self._stop = stop
        self._chunkSize = chunkSize
        self.bytesRead = 0
        self.unpackError: str | None = None

    def run(self, consumer: Consumer | None) -> str:
        """Hash every byte, handing each chunk to C{consumer}; the hex digest."""
        try:
            with closing(self._chunks()) as chunks:
                for data in chunks:
                    if consumer is not None:
                        consumer.feed(data)
        finally:
            if consumer is not None:
                consumer.finish()
        return self._hash.hexdigest()

    def _chunks(self) -> Iterator[bytes]:
        """The artifact's bytes in chunks, hashed and counted as they go."""
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            reader = ChunkReader(fd, self._stop, self._chunkSize)
            while data := reader.read():
                self.bytesRead += len(data)
                self._hash.update(data)
                yield data
        finally:
            os.close(fd)

    def runZstd(self, consumer: Consumer) -> str:
        """
        Hash every byte and decompress it in this thread into C{consumer}
        (python-zstandard, which checks each frame's checksum, releases the
        GIL, and fills one reused buffer: no pipe, no child, flat memory).
        The artifact is read to its end even when it does not decompress.
        """
        walker = FrameWalker()
        buffer = bytearray(self._chunkSize)
        view = memoryview(buffer)
        with closing(self._chunks()) as chunks:
            source = _WalkedSource(chunks, walker)
            try:
                decompressor = zstandard.ZstdDecompressor()
                with decompressor.stream_reader(source, read_size=self._chunkSize,
                                                read_across_frames=True,
                                                closefd=False) as stream:
                    while count := stream.readinto(buffer):
                        if self._stop():
                            raise Stopped()
                        consumer.feed(view[:count])
            except zstandard.ZstdError as error:
                self.unpackError = str(error)
            finally:
                consumer.finish()
            source.drain()
        if self.unpackError is None and not walker.complete:
            self.unpackError = walker.problem or "the stream ends inside a frame (truncated)"
        return self._hash.hexdigest()

    def runZip(self, consumer: Consumer) -> str:
        """Hash every byte, then inflate the one member into C{consumer}; the hex digest."""
        try:
            digest = self.run(None)
            try:
                archive, name = zipMember(self._path)
                with archive, archive.open(name) as member:
                    while data := member.read(self._chunkSize):
                        if self._stop():
                            raise Stopped()
                        consumer.feed(data)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
                self.unpackError = str(error) or type(error).__name__
        finally:
            consumer.finish()
        return digest


class _WalkedSource:
    """A file-like C{read} over chunks, each also shown to a L{FrameWalker}."""

    def __init__(self, chunks: Iterator[bytes], walker: FrameWalker) -> None:
        self._chunks = chunks
        self._walker = walker

    def read(self, size: int = -1) -> bytes:
        data = next(self._chunks, b"")
        self._walker.feed(data)
        return data

    def drain(self) -> None:
        """Read what the decompressor left (after an error): all of it is hashed."""
        while self.read():
            pass
