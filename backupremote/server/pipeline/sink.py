"""
The artifact sink: the one place where backup bytes enter the server.

A dedicated thread reads the final stream (the compressor's stdout, or the
dump's when it is not compressed by a program) straight from its OS pipe,
compresses it when the compression is in-process (zip), hashes what it
writes and writes it to the artifact file, one chunk at a time. Nothing
queues in between, so back-pressure is the kernel's: while the disk is
slow, the thread does not read, the pipe (1 MiB) fills, the compressor
blocks writing, its input pipe fills, and the dump blocks too. Memory stays
at one chunk whatever the speeds. The reactor thread never touches the data.

Reading, hashing (C{hashlib} for more than 2 KiB at a time), deflating and
writing all release the GIL, so the reactor keeps running meanwhile.
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import stat
import time
from backupremote.filewriting import Writer, writeAll
from backupremote.server.machinery.compressors import MakeTransform
from backupremote.server.pipeline.chunkdigests import ChunkDigester, ChunkDigests
from backupremote.server.pipeline.threads import StopFlag

#: How much is read at a time.
CHUNK_SIZE = 1 << 20

#: Pipe capacity asked for (Linux C{F_SETPIPE_SZ}); 1 MiB is the default
#: limit for unprivileged processes.
PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = 1031

#: After a read much smaller than a chunk, wait this long before the next:
#: the pipe fills meanwhile (1 ms is 1 MB at 1 GB/s, within its capacity,
#: so the producer never waits for it), and the thread makes a few hundred
#: large reads and writes a second instead of tens of thousands of small ones.
COALESCE_SECONDS = 0.001

#: How long a read waits before looking at the stop flag again.
POLL_MILLISECONDS = 200



class Stopped(Exception):
    """The run stopped the thread (cancel, timeout, another part failed)."""


def enlargePipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Ask for a C{size}-byte pipe buffer; keep the default if refused."""
    try:
        import fcntl

        fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except (OSError, ImportError):
        pass


class ChunkReader:
    """
    Reads an fd (a pipe or a file) chunk by chunk until its end, giving up
    when the stop flag is set; a pipe is made non-blocking and waited on
    with C{poll} so that the flag is looked at even when no data comes.
    """

    def __init__(self, fd: int, stop: StopFlag, chunkSize: int = CHUNK_SIZE,
                 coalesce: float = COALESCE_SECONDS) -> None:
        self._fd = fd
        self._stop = stop
        self._chunkSize = chunkSize
        self._coalesce = coalesce
        self._pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        self._poller = select.poll()
        if self._pipe:
            os.set_blocking(fd, False)
            self._poller.register(fd, select.POLLIN)

    def read(self) -> bytes:
        """The next chunk; C{b""} at the end."""
        while True:
            if self._stop():
                raise Stopped()
            try:
                data = os.read(self._fd, self._chunkSize)
            except BlockingIOError:
                self._poller.poll(POLL_MILLISECONDS)
                continue
            if self._coalesce and self._pipe and 0 < len(data) < self._chunkSize // 4:
                time.sleep(self._coalesce)
            return data


class ArtifactSink:
    """
    Reads C{source} to its end and writes the artifact file C{path} (created
    new, 0600), hashing what it writes with C{checksum}. With
    C{makeTransform} (zip) the bytes read are compressed first, the
    transform calling back with what it makes. C{path} C{None} only hashes
    (the SQLite backup file that is its own artifact).

    Counters, read by the reactor for progress (a plain int is safe to read
    from another thread): C{bytesIn} read from the source, C{bytesOut}
    written; C{peakBuffered} is the most bytes ever held between reading
    and writing.
    """

    def __init__(self, source: int, path: str | None, checksum: str, stop: StopFlag,
                 makeTransform: MakeTransform | None = None,
                 chunkSize: int = CHUNK_SIZE, write: Writer = os.write,
                 digestsPath: str | None = None) -> None:
        self._source = source
        self._hash = hashlib.new(checksum)
        #: The transfer manifest's chunk digests, made on the way (if asked):
        #: L{ChunkDigests} once L{run} has returned.
        self.chunkDigests: ChunkDigests | None = None
        self._digester = (ChunkDigester(digestsPath, wholeFromSink=checksum == "sha256")
                          if digestsPath is not None else None)
        self._stop = stop
        self._makeTransform = makeTransform
        self._chunkSize = chunkSize
        self._write = write
        self._out: int | None = None
        if path is not None:
            # Made here, in the reactor's thread: once the sink exists, so
            # does its file (one open() does not keep the reactor waiting).
            try:
                self._out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
                                    | os.O_NOFOLLOW, 0o600)
            except BaseException:
                if self._digester is not None:
                    self._digester.close()
                raise
        self.bytesIn = 0
        self.bytesOut = 0
        self.buffered = 0
        self.peakBuffered = 0

    def run(self) -> str:
        """
        Move every byte (in the sink's thread); the hex digest of what was
        written. Both file descriptors are closed when it returns or raises.
        """
        try:
            reader = ChunkReader(self._source, self._stop, self._chunkSize)
            transform = self._makeTransform(self._emit) if self._makeTransform else None
            while data := reader.read():
                self.bytesIn += len(data)
                self._hold(len(data))
                if transform is None:
                    self._emit(data)
                else:
                    transform.feed(data)
                self._hold(-len(data))
            if transform is not None:
                transform.finish()
            if self._out is not None:
                out, self._out = self._out, None
                os.close(out)
            digest = self._hash.hexdigest()
            if self._digester is not None:
                self.chunkDigests = self._digester.finish(digest)
            return digest
        finally:
            if self._digester is not None:
                self._digester.close()
            # Closing the source first tells the producers to stop (EPIPE)
            # should the sink fail or be stopped before the end.
            os.close(self._source)
            if self._out is not None:
                os.close(self._out)

    def _hold(self, count: int) -> None:
        self.buffered += count
        self.peakBuffered = max(self.peakBuffered, self.buffered)

    def _emit(self, data: bytes) -> None:
        # Without a transform the chunk is already counted as held.
        made = len(data) if self._makeTransform is not None else 0
        self._hold(made)
        self._hash.update(data)
        if self._digester is not None:
            self._digester.feed(data)
        if self._out is not None:
            writeAll(self._out, data, self._write)
        self.bytesOut += len(data)
        self._hold(-made)


def isDiskFull(error: BaseException) -> bool:
    """Whether C{error} says the disk (or the quota) is full."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
