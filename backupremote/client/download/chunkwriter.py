"""
Writing received chunks to disk off the reactor, with back-pressure.

The reactor hands each received box to L{ChunkWriter.put}; a writer thread
writes it at its offset in the C{.part} file and continues the whole-file
hash. Chunks are written strictly in order: one that is not the next
expected is skipped. With C{verify}, each chunk's SHA-256 is checked
against the manifest first and a bad one is reported (the download
restarts the stream from it); the download asks for that only after the
whole-file SHA-256 did not match (TLS already authenticates every byte in
transit, and the whole file is checked before it gets its final name).

The queue is bounded: beyond C{limit} answered boxes waiting, C{put}
returns a Deferred that fires when the thread has caught up, and the
download answers the box only then, so the server's window stalls and a
slow disk pauses the server. Progress is made durable now and then (fsync
of the data, then the progress file) by a thread of its own, L{DurableProgress},
while the writer goes on writing, and at every L{flush}.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from backupremote.client.download.partfile import DIGEST_SIZE, PartFile
from backupremote.protocol.transfers import CHUNK_SIZE

#: Boxes queued before answers are withheld (~8 MB with 8 chunks a box).
QUEUE_BOXES = 16
#: Make progress durable after this many bytes or seconds, whichever comes first.
SYNC_BYTES = 64 << 20
SYNC_SECONDS = 2.0


class _Flush:
    def __init__(self, deferred: Deferred[None]) -> None:
        self.deferred = deferred


def makeDurable(part: PartFile, chunks: int) -> None:
    """Sync the data, then record that its first C{chunks} chunks are written."""
    assert part.descriptor is not None
    os.fdatasync(part.descriptor)
    part.recordProgress(chunks)


class DurableProgress:
    """
    Makes a download's progress durable on a thread of its own: an
    C{fdatasync} of the data, then the progress file naming the chunks
    written before it. The writer only asks and goes on writing: waiting
    ~25 ms for the disk every 64 MiB itself filled its queue and stalled
    the stream each time. A request made while a sync runs replaces any
    older one still waiting (the newest figure is the one worth keeping).
    After a failed sync it takes no more requests: a later C{fdatasync}
    can succeed where the data of the failed one was lost, and the progress
    file would then name chunks that are not on the disk.
    """

    def __init__(self, part: PartFile) -> None:
        self._part = part
        self._condition = threading.Condition()
        self._wanted: int | None = None
        self._busy = False
        self._stopping = False
        #: Why a sync failed (the writer raises it at its next request).
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="backupremote-chunk-syncer",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request(self, chunks: int) -> None:
        """Make the first C{chunks} chunks durable soon (raises an earlier sync's error)."""
        with self._condition:
            if self.error is not None:
                raise self.error
            self._wanted = chunks
            self._condition.notify_all()

    def drain(self) -> None:
        """Wait until every request is done (raises a sync's error)."""
        with self._condition:
            while (self._wanted is not None or self._busy) and self.error is None:
                self._condition.wait()
            if self.error is not None:
                raise self.error

    def stop(self) -> None:
        """End the thread after the request it holds (the data file must stay open until then)."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._wanted is None and not self._stopping:
                    self._condition.wait()
                if self._wanted is None or self.error is not None:
                    self._wanted = None
                    return
                chunks, self._wanted, self._busy = self._wanted, None, True
            try:
                makeDurable(self._part, chunks)
            except BaseException as error:  # noqa: BLE001 (the writer fails with it)
                with self._condition:
                    self.error = error
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()


class ChunkWriter:
    """Verifies and writes the chunks of one download into its C{.part} file."""

    def __init__(self, part: PartFile, digests: bytes, nextChunk: int, whole: Any,
                 callFromThread: Callable[..., None] | None, onBadChunk: Callable[[int], None],
                 onFailure: Callable[[BaseException], None], clock: IReactorTime,
                 limit: int = QUEUE_BOXES, threaded: bool = True, verify: bool = True) -> None:
        assert part.descriptor is not None
        #: when to make progress durable (read from the writer thread: its
        #: C{seconds()} must be safe there, as the reactor's is)
        self._clock = clock
        self._part = part
        self._descriptor = part.descriptor
        self._digests = digests
        #: Chunks before this one are verified and written (read from any thread).
        self.nextChunk = nextChunk
        self._whole = whole
        self._callFromThread = callFromThread if callFromThread and threaded else (
            lambda f, *a: f(*a))
        self._onBadChunk = onBadChunk
        self._onFailure = onFailure
        #: Why the writer stopped (a disk error), if it did.
        self.failure: BaseException | None = None
        self.limit = limit
        self.threaded = threaded
        #: Check each chunk against its digest before writing it.
        self.verify = verify
        self._queue: deque[Any] = deque()
        self._condition = threading.Condition()
        self._withheld = 0
        self._waiters: deque[Deferred[dict[str, Any]]] = deque()
        #: flushes asked and not answered yet (a failed writer answers them all)
        self._flushes: list[Deferred[None]] = []
        self._closing = False
        self._closed: Deferred[None] = Deferred()
        self._unsynced = 0
        self._syncedAt = self._clock.seconds()
        self._thread: threading.Thread | None = None
        self._durable: DurableProgress | None = None
        self.bytesWritten = 0

    def start(self) -> None:
        if self.threaded:
            self._durable = DurableProgress(self._part)
            self._durable.start()
            self._thread = threading.Thread(target=self._run, name="backupremote-chunk-writer",
                                            daemon=True)
            self._thread.start()

    # Reactor side

    def put(self, index: int, chunks: list[bytes]) -> Deferred[dict[str, Any]] | None:
        """Queue a box; a Deferred means: answer the box when it fires."""
        if not self.threaded:
            try:
                self._write(index, chunks)
            except Exception as error:  # noqa: BLE001 (the download fails with it)
                self._failed(error)
            return None
        with self._condition:
            self._queue.append((index, chunks))
            full = len(self._queue) - self._withheld > self.limit
            if full:
                self._withheld += 1
            self._condition.notify()
        if not full:
            return None
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def flush(self) -> Deferred[None]:
        """Fires once everything queued so far is written and made durable."""
        flushed: Deferred[None] = Deferred()
        if self._closed.called or self._closing:
            flushed.callback(None)  # (the caller finds why, if the writer failed)
            return flushed
        if not self.threaded:
            self._sync()
            flushed.callback(None)
            return flushed
        self._flushes.append(flushed)
        with self._condition:
            self._queue.append(_Flush(flushed))
            self._condition.notify()
        return flushed

    def close(self) -> Deferred[None]:
        """Drop what is still queued, make what was written durable, end the thread."""
        if not self.threaded or self._thread is None:
            if not self._closed.called:
                self._sync()
                self._closed.callback(None)
            return self._closed
        with self._condition:
            self._closing = True
            self._queue.clear()
            self._condition.notify()
        self._answerAll()
        return self._closed

    def wholeDigest(self) -> str:
        """The SHA-256 of the chunks written so far (all of them, at the end)."""
        return self._whole.hexdigest()

    def _answer(self, count: int) -> None:
        for _ in range(count):
            if self._waiters:
                self._waiters.popleft().callback({})

    def _flushed(self, flushed: Deferred[None]) -> None:
        self._flushes.remove(flushed)
        flushed.callback(None)

    def _answerAll(self) -> None:
        while self._waiters:
            self._waiters.popleft().callback({})

    # Writer thread

    def _run(self) -> None:
        try:
            try:
                self._loop()
            finally:
                # before the download may close the data file
                assert self._durable is not None
                self._durable.stop()
        except BaseException as error:  # noqa: BLE001 (the disk failed: the download says why)
            self._callFromThread(self._failed, error)
        else:
            self._callFromThread(self._ended)

    def _failed(self, error: BaseException) -> None:
        # told first: a flush answered below resumes a download that must see it
        self.failure = error
        self._onFailure(error)
        self._ended()

    def _ended(self) -> None:
        """The writer is gone: whatever still waits on it is answered."""
        self._answerAll()
        for flushed in self._flushes:
            flushed.callback(None)  # the caller finds the failure, if there was one
        self._flushes.clear()
        self._closed.callback(None)

    def join(self) -> None:
        """
        Block until the writer's threads are gone (a cancelled download,
        before it closes the data file they may still be using): the writer
        stops the syncing thread before it ends.
        """
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closing:
                    self._condition.wait()
                if self._closing:
                    break
                item = self._queue.popleft()
                answer = 0
                while self._withheld and len(self._queue) - self._withheld < self.limit:
                    self._withheld -= 1
                    answer += 1
            if answer:
                self._callFromThread(self._answer, answer)
            if isinstance(item, _Flush):
                self._sync()
                self._callFromThread(self._flushed, item.deferred)
            else:
                self._write(*item)
        self._sync()

    def _write(self, index: int, chunks: list[bytes]) -> None:
        skip = self.nextChunk - index
        if not 0 <= skip < len(chunks):
            return  # written already, or a chunk before this box is missing
        if skip:
            chunks, index = chunks[skip:], index + skip
        good = len(chunks)
        if self.verify:
            digests = self._digests
            sha256 = hashlib.sha256
            for offset, chunk in enumerate(chunks):
                start = (index + offset) * DIGEST_SIZE
                if sha256(chunk).digest() != digests[start:start + DIGEST_SIZE]:
                    good = offset
                    break
        if good:
            # one system call and one whole-file update per box: fewer GIL hand-overs
            verified = chunks[:good] if good < len(chunks) else chunks
            size = sum(map(len, verified))
            if os.pwritev(self._descriptor, verified, index * CHUNK_SIZE) != size:
                raise OSError(errno.ENOSPC, "short write")
            self._whole.update(verified[0] if good == 1 else b"".join(verified))
            self.nextChunk = index + good
            self._unsynced += size
            self.bytesWritten += size
        if good < len(chunks):
            self._callFromThread(self._onBadChunk, index + good)
        elif self._unsynced >= SYNC_BYTES or self._clock.seconds() - self._syncedAt >= SYNC_SECONDS:
            if self._durable is None:
                self._sync()
            else:
                self._durable.request(self.nextChunk)
                self._synced()

    def _sync(self) -> None:
        """Make everything written durable now (after any sync in the background)."""
        if self._durable is not None:
            self._durable.drain()
        if self._unsynced:
            makeDurable(self._part, self.nextChunk)
        self._synced()

    def _synced(self) -> None:
        self._unsynced = 0
        self._syncedAt = self._clock.seconds()
