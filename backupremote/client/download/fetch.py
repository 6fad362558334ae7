"""
Downloading a run's artifact: resumable, verified, and atomic.

    path = await client.download(runId, FilePath("/backups"), onProgress=print)

The manifest and every chunk digest are fetched first (the digests are
kept beside the C{.part} file). Chunks are streamed with
``fileTransferStart`` from the first chunk the client does not have and
written by a L{ChunkWriter} thread, which hashes the whole file on the way;
a dropped connection (or a transfer the server aborted because it stalled)
is retried with backoff from the first chunk not received. The chunk
digests are checked where they are needed: a later run of the same
download (after a crash) re-checks what the C{.part} file holds before it
continues, and if the whole file's SHA-256 does not match at the end, the
C{.part} file is checked chunk by chunk, and the stream restarts from the
first bad chunk with every chunk checked as it arrives (a bad one restarts
it again). In transit TLS authenticates every byte, so a chunk's own check
would only repeat, at the cost of a second SHA-256 pass, what the whole
file's check proves before the rename. The target appears under its final
name only after the whole-file SHA-256 matched, the data was fsynced and
renamed, and the folder fsynced. An existing target with the right hash is
a finished download.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, FirstError, gatherResults
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.protocols import amp
from twisted.python.filepath import FilePath

from backupremote.client.backoff import Backoff
from backupremote.client.download.chunkwriter import ChunkWriter
from backupremote.client.download.partfile import DIGEST_SIZE, PartFile, fileSha256
from backupremote.protocol.errors import (
    CONFLICT,
    CONNECTION_FAILED,
    INTERNAL_ERROR,
    NOT_FOUND,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    FileChunkHashes,
    FileEntry,
    FileTransferStart,
    FileTransferStop,
    ListFiles,
)
from backupremote.reactors import inThreadPool

#: Times one chunk may fail its hash before the download gives up.
MAX_BAD_CHUNK = 3
#: C{fileChunkHashes} asked at once (~64 KB answers each).
HASH_ASKS_AT_ONCE = 8
PROGRESS_INTERVAL = 0.25

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")

ProgressHandler = Callable[["DownloadProgress"], None]


@frozen
class DownloadProgress:
    """How far a download is; C{phase} is checking, downloading, verifying or done."""

    runId: str
    name: str
    phase: str
    bytesDone: int
    sizeBytes: int
    chunksDone: int
    chunkCount: int
    rate: float | None = None
    resumedFrom: int = 0
    reconnects: int = 0


def targetName(entry: FileEntry) -> str:
    """The local file name: the server's, if it is a plain safe name."""
    if _SAFE_NAME.fullmatch(entry.name) and not entry.name.endswith(".part"):
        return entry.name
    return "artifact-" + (re.sub(r"[^A-Za-z0-9-]", "", entry.fileId)[:64] or "file")


class _Transfer:
    """One ``fileTransferStart`` of a download: receives its pushed boxes."""

    def __init__(self, download: FileDownload, transferId: str, start: int) -> None:
        self.download = download
        self.transferId = transferId
        self.nextChunk = start
        self.done: Deferred[str] = Deferred()
        self.abortedWith: BackupRemoteError | None = None

    def chunk(self, index: int, chunks: list[bytes]) -> Deferred[Any] | None:
        if self.done.called or index != self.nextChunk or not chunks:
            self.end("restart")
            raise amp.RemoteAmpError(b"BAD_REQUEST", b"{}")
        self.nextChunk = index + len(chunks)
        return self.download._received(self.nextChunk, index, chunks)

    def progress(self, chunksSent: int, bytesSent: int) -> None:
        pass  # the client's own count is the truth

    def complete(self, sizeBytes: int, sha256: str) -> None:
        entry = self.download.entry
        if (sizeBytes, sha256) != (entry.sizeBytes, entry.sha256):
            self.download._fail(BackupRemoteError(
                VERIFICATION_FAILED, "the server's file no longer matches its manifest"))
        self.end("complete" if self.nextChunk >= entry.chunkCount else "restart")

    def aborted(self, errorCode: str, errorMessage: str) -> None:
        if not self.done.called:
            self.abortedWith = BackupRemoteError(errorCode, errorMessage)
            self.end("aborted")

    def end(self, outcome: str) -> None:
        if not self.done.called:
            self.done.callback(outcome)


class FileDownload:
    """One file of a manifest into one folder."""

    def __init__(self, connection: Any, reactor: IReactorTime, runId: str, entry: FileEntry,
                 directory: FilePath, onProgress: ProgressHandler | None = None,
                 runInThread: Callable[..., Deferred[Any]] | None = None,
                 threaded: bool = True, backoff: Backoff | None = None) -> None:
        self._connection = connection
        self._reactor = reactor
        self.runId = runId
        self.entry = entry
        self.directory = directory
        self._onProgress = onProgress
        self._runInThread = runInThread or inThreadPool(reactor)
        self._threaded = threaded
        self.backoff = backoff or Backoff(reactor)
        self.nextChunk = 0  # the first chunk not received
        self.resumedFrom = 0
        self._writer: ChunkWriter | None = None
        self._transfer: _Transfer | None = None
        self._failure: BackupRemoteError | None = None
        self._badChunks: Counter[int] = Counter()
        self._session = (reactor.seconds(), 0)
        self._reported = float("-inf")

    # The whole download

    async def run(self) -> FilePath:
        entry = self.entry
        target = self.directory.child(targetName(entry))
        part = PartFile(self.directory, target.basename(), entry)
        part.acquire()  # before looking at the target: another download may be finishing it
        try:
            if target.exists():
                matches = await self._runInThread(fileSha256, target) == entry.sha256
                part.lock.remove()  # still held: nothing else to do here
                if not matches:
                    raise BackupRemoteError(CONFLICT, f"{target.path} exists and is not this "
                                            "artifact; move it away or download elsewhere")
                self._report("done", force=True)
                return target
            digests = await self._runInThread(part.savedDigests) or await self._fetchDigests(part)
            self._report("checking", force=True)
            good, whole = await self._runInThread(part.recheck, digests)
            self.nextChunk = self.resumedFrom = good
            # the speed counts what moves from now on, not what the part had
            self._session = (self._reactor.seconds(), good)
            verify = False  # the whole file's hash decides; chunks are checked after a miss
            while True:
                digest = await self._write(part, digests, whole, verify)
                if digest == entry.sha256:
                    break
                if verify:
                    await self._runInThread(part.discard)
                    raise BackupRemoteError(VERIFICATION_FAILED, (
                        f"{target.basename()}: every chunk matched but the whole file's "
                        "SHA-256 did not; the partial download was removed, run it again"))
                # find the first bad chunk, and fetch again from it, checking every chunk
                self._report("checking", force=True)
                good, whole = await self._runInThread(part.recheck, digests)
                if good < entry.chunkCount:
                    self._badChunk(good)  # counts towards MAX_BAD_CHUNK
                    self._check()
                    self.nextChunk = good
                self._session = (self._reactor.seconds(), self.nextChunk)
                verify = True  # (every chunk right: the whole is hashed again from the disk)
            path = await self._runInThread(part.finish)
        finally:
            part.close()
        self._report("done", force=True)
        return path

    async def _write(self, part: PartFile, digests: bytes, whole: Any, verify: bool) -> str:
        """Fetch and write from C{nextChunk} to the end: the whole file's SHA-256."""
        writer = self._writer = ChunkWriter(
            part, digests, self.nextChunk, whole,
            IReactorFromThreads(self._reactor).callFromThread if self._threaded else None,
            self._badChunk,
            self._writerFailed, clock=self._reactor, threaded=self._threaded, verify=verify)
        writer.start()
        try:
            await self._fetch(writer)
        finally:
            try:
                await writer.close()
            except CancelledError:
                # the data file is closed next: its threads must be gone (one
                # write and one sync at most, on this cancelled download's way out)
                writer.join()
                raise
        self._check()
        self._report("verifying", force=True)
        return writer.wholeDigest()

    async def _fetchDigests(self, part: PartFile) -> bytes:
        """
        Every chunk digest, asked for L{HASH_ASKS_AT_ONCE} pages at a time
        (one after the other, a GiB's nine pages took a round trip each; a
        100 GiB artifact has 820). A page is what the first answer held; an
        answer shorter than that leaves a hole, filled by asking from it.
        """
        count = self.entry.chunkCount
        digests = bytearray()
        if count:
            digests += await self._digestsFrom(0)
        page = len(digests) // DIGEST_SIZE
        starts = list(range(page, count, page)) if page else []
        for first in range(0, len(starts), HASH_ASKS_AT_ONCE):
            batch = starts[first:first + HASH_ASKS_AT_ONCE]
            # one try for the batch: a dropped connection is one failure, not eight
            answers = await self.backoff.call(lambda batch=batch: self._askPages(batch))
            for start, hashes in zip(batch, answers):
                await self._digestsUpTo(digests, start)
                digests += hashes
        await self._digestsUpTo(digests, count)
        saved = bytes(digests[:count * DIGEST_SIZE])
        await self._runInThread(part.saveDigests, saved)
        return saved

    async def _digestsUpTo(self, digests: bytearray, end: int) -> None:
        """Ask for the digests from the end of C{digests} to chunk C{end} (a hole)."""
        del digests[end * DIGEST_SIZE:]
        while len(digests) < end * DIGEST_SIZE:
            digests += await self._digestsFrom(len(digests) // DIGEST_SIZE)
        del digests[end * DIGEST_SIZE:]

    async def _digestsFrom(self, start: int) -> bytes:
        return await self.backoff.call(lambda: self._askPage(start))

    async def _askPages(self, starts: list[int]) -> list[bytes]:
        """The pages from C{starts}, asked at once: the first failure fails the rest."""
        asks = [Deferred.fromCoroutine(self._askPage(start)) for start in starts]
        try:
            return await gatherResults(asks, consumeErrors=True)
        except FirstError as error:
            for ask in asks:
                ask.cancel()  # (no-op for those answered)
            error.subFailure.raiseException()
            raise  # (not reached: for the type checker)

    async def _askPage(self, start: int) -> bytes:
        answer = await self._connection.call(
            FileChunkHashes, fileId=self.entry.fileId, start=start)
        hashes: bytes = answer["hashes"]
        if not hashes or len(hashes) % DIGEST_SIZE:
            raise BackupRemoteError(INTERNAL_ERROR, "the server sent malformed chunk hashes")
        return hashes

    async def _fetch(self, writer: ChunkWriter) -> None:
        """Stream until every chunk is written, resuming as often as needed."""
        count = self.entry.chunkCount
        while True:
            self._check()
            if self.nextChunk < count:
                try:
                    await self._stream()
                except BackupRemoteError as error:
                    await self.backoff.wait(error)
                continue
            await writer.flush()
            self._check()
            if writer.nextChunk >= count:
                return
            self.nextChunk = writer.nextChunk  # a chunk failed its hash after the last box

    async def _stream(self) -> None:
        """One transfer from C{nextChunk}: until complete, a restart, or a dropped connection."""
        self._report("downloading", force=True)
        protocol = await self._connection.connection()
        answer = await self._connection.callOn(
            protocol, FileTransferStart, fileId=self.entry.fileId, startChunk=self.nextChunk)
        transfer = self._transfer = _Transfer(self, answer["transferId"], self.nextChunk)
        receivers = self._connection.transfers
        receivers.add(transfer.transferId, transfer)
        protocol.lost.addBoth(lambda result: (transfer.end("lost"), result)[1])
        outcome = "cancelled"
        try:
            outcome = await transfer.done
        finally:
            receivers.remove(transfer.transferId)
            self._transfer = None
            if outcome not in ("complete", "lost", "aborted"):
                Deferred.fromCoroutine(self._connection.callOn(
                    protocol, FileTransferStop, transferId=transfer.transferId,
                )).addErrback(lambda _: None)
        if outcome == "lost":
            raise BackupRemoteError(CONNECTION_FAILED, "the connection dropped during the "
                                                       "transfer; resuming")
        if outcome == "aborted":
            assert transfer.abortedWith is not None
            raise transfer.abortedWith  # TIMEOUT (a stall): resumed with backoff

    # Events (reactor)

    def _received(self, nextChunk: int, index: int, chunks: list[bytes]) -> Deferred[Any] | None:
        assert self._writer is not None
        self.nextChunk = nextChunk
        self.backoff.failures = 0
        self._report("downloading")
        return self._writer.put(index, chunks)

    def _badChunk(self, number: int) -> None:
        self._badChunks[number] += 1
        if self._badChunks[number] > MAX_BAD_CHUNK:
            self._fail(BackupRemoteError(VERIFICATION_FAILED, (
                f"chunk {number} failed its SHA-256 check {MAX_BAD_CHUNK + 1} times; the "
                "server's staged file may be damaged")))
            return
        self.nextChunk = min(self.nextChunk, number)
        if self._transfer is not None:
            self._transfer.end("restart")

    def _writerFailed(self, error: BaseException) -> None:
        self._fail(BackupRemoteError(
            INTERNAL_ERROR, f"writing {self.entry.name}.part failed: {error}"))

    def _fail(self, error: BackupRemoteError) -> None:
        if self._failure is None:
            self._failure = error
        if self._transfer is not None:
            self._transfer.end("failed")

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _report(self, phase: str, force: bool = False) -> None:
        if self._onProgress is None:
            return
        now = self._reactor.seconds()
        if not force and now - self._reported < PROGRESS_INTERVAL:
            return
        self._reported = now
        started, startChunk = self._session
        if phase == "checking":
            self._session = (now, self.nextChunk)
        done = min(self.nextChunk * CHUNK_SIZE, self.entry.sizeBytes)
        if phase == "done":
            done = self.entry.sizeBytes
        elapsed = now - started
        rate = ((self.nextChunk - startChunk) * CHUNK_SIZE / elapsed) if elapsed > 0 else None
        self._onProgress(DownloadProgress(
            runId=self.runId, name=targetName(self.entry), phase=phase, bytesDone=done,
            sizeBytes=self.entry.sizeBytes,
            chunksDone=self.entry.chunkCount if phase == "done" else self.nextChunk,
            chunkCount=self.entry.chunkCount, rate=rate, resumedFrom=self.resumedFrom,
            reconnects=self.backoff.total))


async def downloadRun(connection: Any, reactor: IReactorTime, runId: str, directory: FilePath,
                      onProgress: ProgressHandler | None = None,
                      backoff: Backoff | None = None, **options: Any) -> FilePath:
    """Download every file of run C{runId} into C{directory}; the artifact's path."""
    backoff = backoff or Backoff(reactor)
    manifest = (await backoff.call(lambda: connection.call(ListFiles, runId=runId)))["manifest"]
    if not manifest.files:
        raise BackupRemoteError(NOT_FOUND, f"run {runId} staged no file")
    paths = []
    for entry in manifest.files:
        paths.append(await FileDownload(connection, reactor, runId, entry, directory, onProgress,
                                        backoff=backoff, **options).run())
    return paths[0]
