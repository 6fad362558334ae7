"""
The client's download against a real server core over in-memory connections:
resume after cuts, a damaged ``.part``, bad chunks, back-pressure, locking.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import queue
import threading
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.backoff import Backoff
from backupremote.client.connection import Credentials
from backupremote.client.download import DownloadProgress, downloadRun
from backupremote.client.download.fetch import FileDownload
from backupremote.client.download.chunkwriter import SYNC_SECONDS, ChunkWriter, DurableProgress
from backupremote.client.download.partfile import PartFile
from backupremote.protocol import errors
from backupremote.protocol.errors import CONNECTION_FAILED, BackupRemoteError
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    CHUNKS_PER_BOX,
    WINDOW_BOXES,
    FileChunkHashes,
    FileEntry,
    ListFiles,
    ReleaseArtifact,
)
from backupremote.server.staging.artifacts import StagedArtifacts, readDigests
from backupremote.server.transfers.sender import ChunkSender
from backupremote.testing import LoopbackConnection
from tests.fixtures import CLIENT_ID, SECRET, synchronously
from tests.server.transfers.helpers import StagingMixin

WINDOW_CHUNKS = WINDOW_BOXES * CHUNKS_PER_BOX
_sendBox = ChunkSender._sendBox


class LoopbackConnections(LoopbackConnection):
    """
    The in-memory connection twin to a L{ServerHarness}, moved step by step
    by the test, counting the chunks the client receives.
    """

    def __init__(self, mixin: StagingMixin) -> None:
        self.harness = mixin.harness
        super().__init__(
            self.harness.clock, Credentials(CLIENT_ID, SECRET, self.harness.license()),
            self.harness.serverProtocol, autoPump=False, keepaliveInterval=1e6,
            keepaliveTimeout=1e6, callTimeout=1e6)
        self.chunksReceived = 0
        original = self.transfers.chunk

        def counting(transferId: str, index: int, chunks: list[bytes]) -> Any:
            answer = original(transferId, index, chunks)
            self.chunksReceived += len(chunks)
            return answer

        self.transfers.chunk = counting  # type: ignore[method-assign]

    @property
    def loopbacks(self) -> list[Any]:
        return self.pumps

    def step(self) -> bool:
        """Run what is due now, then move bytes as L{LoopbackConnection.step}."""
        self.reactor.advance(0)
        return super().step()


class _SlowLoopback(LoopbackConnections):
    """Each step takes 50 ms on the clock: time passes while bytes move."""

    def step(self) -> bool:
        self.reactor.advance(0.05)
        return super().step()


def drive(connections: LoopbackConnections, deferred: Deferred[Any],
          cutAt: list[int] | None = None, partial: int = 0, idle: float = 1.0) -> Any:
    """Run until C{deferred} fires, cutting when the client has received C{cutAt[0]} chunks."""
    results: list[Any] = []
    deferred.addBoth(results.append)
    cuts = sorted(cutAt or [])
    for _ in range(200_000):
        if results:
            break
        if cuts and connections.chunksReceived >= cuts[0]:
            cuts.pop(0)
            connections.cut(partial)
            continue
        if not connections.step():
            connections.reactor.advance(idle)
    else:
        raise AssertionError("the download did not finish")
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


class DownloadTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpStaging()
        self.sent: list[int] = []

        def counting(sender: ChunkSender, count: int) -> None:
            self.sent.append(count)
            _sendBox(sender, count)

        self.patch(ChunkSender, "_sendBox", counting)
        self.folder = FilePath(self.mktemp())
        self.connections = LoopbackConnections(self)

    def download(self, runId: str, connections: LoopbackConnections | None = None,
                 onProgress: Any = None, **options: Any) -> Deferred[FilePath]:
        connections = connections or self.connections
        return Deferred.fromCoroutine(downloadRun(
            connections, connections.reactor, runId, self.folder, onProgress,
            runInThread=synchronously, threaded=False, **options))

    def assertOnlyTarget(self, path: FilePath, data: bytes) -> None:
        self.assertEqual(path.getContent(), data)
        self.assertEqual(os.listdir(self.folder.path), [path.basename()])

    def test_download(self) -> None:
        self.stage("r", 50 * CHUNK_SIZE + 99)
        progress: list[DownloadProgress] = []
        path = drive(self.connections, self.download("r", onProgress=progress.append))
        self.assertOnlyTarget(path, self.producer.data["r"])
        self.assertEqual(sum(self.sent), 51)
        self.assertEqual(progress[0].phase, "checking")
        self.assertEqual(progress[-1].phase, "done")
        self.assertEqual(progress[-1].bytesDone, progress[-1].sizeBytes)
        self.assertEqual(self.harness.transfers.active, [])

    def test_digestsAskedSeveralPagesAtOnce(self) -> None:
        """
        The chunk digests are asked for eight pages at a time; an answer
        shorter than the first one's page leaves a hole that is asked for
        again from where it ended, a longer one is cut where the next page
        starts: the digests kept are every chunk's, in order.
        """
        self.stage("r", 60 * CHUNK_SIZE + 5)
        data = self.producer.data["r"]
        expected = b"".join(hashlib.sha256(data[i:i + CHUNK_SIZE]).digest()
                            for i in range(0, len(data), CHUNK_SIZE))
        pageSizes = {7: 3, 21: 9}  # start -> how many the server answers (else 7)
        asked: list[int] = []

        def paged(artifacts: Any, staged: Any, start: int) -> bytes:
            asked.append(start)
            return readDigests(staged.folder, start, pageSizes.get(start, 7))

        self.patch(StagedArtifacts, "digests", paged)
        inFlight, most = [0], [0]
        call = self.connections.call

        def counted(command: Any, **arguments: Any) -> Deferred[Any]:
            if command is not FileChunkHashes:
                return Deferred.fromCoroutine(call(command, **arguments))
            inFlight[0] += 1
            most[0] = max(most[0], inFlight[0])

            def answered(result: Any) -> Any:
                inFlight[0] -= 1
                return result
            return Deferred.fromCoroutine(call(command, **arguments)).addBoth(answered)

        self.patch(self.connections, "call", counted)
        manifest = drive(self.connections, Deferred.fromCoroutine(
            call(ListFiles, runId="r")))["manifest"]
        (entry,) = manifest.files
        download = FileDownload(self.connections, self.connections.reactor, "r", entry,
                                self.folder, runInThread=synchronously, threaded=False)
        part = PartFile(self.folder, "out.bin", entry)
        part.acquire()
        self.addCleanup(part.close)
        digests = drive(self.connections, Deferred.fromCoroutine(download._fetchDigests(part)))
        self.assertEqual(digests, expected)
        self.assertEqual(part.hashes.getContent(), expected)
        # the first page (7), the eight after it at once (7 ... 56), then the hole
        # that 7's short answer left (10-13); 21's two extra are cut where 28 starts
        self.assertEqual(asked, [0, 7, 14, 21, 28, 35, 42, 49, 56, 10])
        self.assertEqual(most[0], 8)

    def test_droppedBatchIsOneFailure(self) -> None:
        """
        The pages asked at once are one try: a connection lost under all of
        them counts once towards giving up, and the batch is asked again.
        """
        entry = FileEntry("f", "out.bin", 20 * CHUNK_SIZE, "0" * 64, CHUNK_SIZE, 20)
        digests = [hashlib.sha256(b"%d" % i).digest() for i in range(20)]
        clock = Clock()
        drops = [True]

        class Pages:
            async def call(self, command: Any, fileId: str, start: int) -> dict[str, bytes]:
                if start and drops[0]:
                    raise BackupRemoteError(CONNECTION_FAILED, "connection lost")
                return {"hashes": b"".join(digests[start:start + 2])}

        download = FileDownload(Pages(), clock, "r", entry, self.folder,
                                runInThread=synchronously, threaded=False)
        part = PartFile(self.folder, "out.bin", entry)
        part.acquire()
        self.addCleanup(part.close)
        fetched = Deferred.fromCoroutine(download._fetchDigests(part))
        self.assertEqual(download.backoff.total, 1)  # eight asks lost, one failure
        drops[0] = False
        clock.advance(60)
        self.assertEqual(self.successResultOf(fetched), b"".join(digests))
        self.assertEqual(download.backoff.total, 1)

    def test_failedPageFailsWithItsError(self) -> None:
        """One of the pages asked at once fails: the download fails with that page's error."""
        self.stage("r", 30 * CHUNK_SIZE)

        def expiring(artifacts: Any, staged: Any, start: int) -> bytes:
            if start == 14:
                raise BackupRemoteError(errors.ARTIFACT_EXPIRED, "the artifact is gone")
            return readDigests(staged.folder, start, 7)

        self.patch(StagedArtifacts, "digests", expiring)
        error = self.assertRaises(BackupRemoteError, drive, self.connections, self.download("r"))
        self.assertEqual(error.code, errors.ARTIFACT_EXPIRED)

    def test_existingTargetIsDone(self) -> None:
        self.stage("r")
        path = drive(self.connections, self.download("r"))
        self.sent.clear()
        self.assertEqual(drive(self.connections, self.download("r")), path)
        self.assertEqual(self.sent, [])
        self.assertEqual(os.listdir(self.folder.path), [path.basename()])
        path.setContent(b"something else")
        error = self.assertRaises(BackupRemoteError, drive, self.connections,
                                  self.download("r"))
        self.assertEqual(error.code, errors.CONFLICT)
        self.assertEqual(os.listdir(self.folder.path), [path.basename()])

    def test_emptyArtifact(self) -> None:
        self.stage("e", 0)
        self.assertOnlyTarget(drive(self.connections, self.download("e")), b"")

    @settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(cuts=st.lists(st.integers(0, 59), min_size=1, max_size=4),
           partial=st.sampled_from([0, 1, 100, 70_000]))
    def test_resumeAfterCutsAnywhere(self, cuts: list[int], partial: int) -> None:
        """Cuts at any chunk: the file is identical, and each cut costs a window at most."""
        self.setUp()
        self.stage("cut", 60 * CHUNK_SIZE - 5)
        path = drive(self.connections, self.download("cut"), cutAt=cuts, partial=partial)
        self.assertOnlyTarget(path, self.producer.data["cut"])
        cutsMade = len(self.connections.loopbacks) - 1
        self.assertLessEqual(cutsMade, len(cuts))
        resent = sum(self.sent) - 60
        self.assertLessEqual(resent, cutsMade * (WINDOW_CHUNKS + 1))

    def test_reconnectsWithBackoff(self) -> None:
        self.stage("b", 30 * CHUNK_SIZE)
        self.connections.refusals = 3
        deferred = self.download("b", backoff=Backoff(self.harness.clock, random=lambda: 0.0))
        clock = self.harness.clock
        started = clock.seconds()
        path = drive(self.connections, deferred, cutAt=[10], idle=0.25)
        self.assertEqual(path.getContent(), self.producer.data["b"])
        self.assertGreaterEqual(clock.seconds() - started, 0.5 + 1 + 2)

    def test_givesUpAfterTooManyFailures(self) -> None:
        self.stage("g")
        self.connections.refusals = 100
        error = self.assertRaises(BackupRemoteError, drive, self.connections,
                                  self.download("g"), idle=30)
        self.assertEqual(error.code, CONNECTION_FAILED)

    def test_damagedPartIsRepaired(self) -> None:
        """A client killed mid-way; a byte of its ``.part`` flips; the next run repairs it."""
        self.stage("f", 40 * CHUNK_SIZE)
        data = self.producer.data["f"]
        first = self.download("f")
        for _ in range(200):
            if self.connections.chunksReceived >= 20:
                break
            self.connections.step()
        first.cancel()  # the client is killed
        self.failureResultOf(first)
        name = self.client.call(ListFiles, runId="f")["manifest"].files[0].name
        part = self.folder.child(name + ".part")
        written = part.getContent()
        self.assertGreaterEqual(len(written), 20 * CHUNK_SIZE)
        self.assertEqual(written[:20 * CHUNK_SIZE], data[:20 * CHUNK_SIZE])
        damaged = bytearray(written)
        damaged[7 * CHUNK_SIZE + 1234] ^= 0x01
        part.setContent(bytes(damaged))
        self.sent.clear()
        again = LoopbackConnections(self)
        path = drive(again, self.download("f", again))
        self.assertOnlyTarget(path, data)
        self.assertEqual(sum(self.sent), 40 - 7)  # resumed from the damaged chunk

    def test_resumedSpeedCountsOnlyNewBytes(self) -> None:
        """After a resume, the rate is the bytes moved now over the time taken now."""
        self.stage("s", 40 * CHUNK_SIZE)
        first = self.download("s")
        for _ in range(200):
            if self.connections.chunksReceived >= 20:
                break
            self.connections.step()
        first.cancel()
        self.failureResultOf(first)
        again = _SlowLoopback(self)
        seen: list[tuple[float, DownloadProgress]] = []
        drive(again, self.download("s", again, onProgress=lambda p: seen.append(
            (again.reactor.seconds(), p))))
        (started,) = [t for t, p in seen if p.phase == "checking"]
        moving = [(t, p) for t, p in seen if t > started]
        self.assertTrue(moving)
        resumed = moving[0][1].resumedFrom
        self.assertGreaterEqual(resumed, 20)
        for t, progress in moving:
            newBytes = (progress.chunksDone - resumed) * CHUNK_SIZE
            self.assertAlmostEqual(progress.rate, newBytes / (t - started))

    def test_badChunkFromTheServerIsFetchedAgain(self) -> None:
        self.stage("c", 20 * CHUNK_SIZE)
        original = ChunkSender._sendBox
        spoiled: list[int] = []

        def spoil(sender: ChunkSender, count: int) -> None:
            if sender.nextChunk == 8 and not spoiled:
                spoiled.append(8)
                real = os.pread
                self.patch(os, "pread", lambda fd, n, at: b"X" + real(fd, n, at)[1:])
                try:
                    original(sender, count)
                finally:
                    self.patch(os, "pread", real)
                return
            original(sender, count)

        self.patch(ChunkSender, "_sendBox", spoil)
        names: list[list[str]] = []
        realFinish = PartFile.finish

        def finish(part: PartFile) -> FilePath:
            names.append(sorted(os.listdir(self.folder.path)))
            return realFinish(part)

        self.patch(PartFile, "finish", finish)
        path = drive(self.connections, self.download("c"))
        self.assertOnlyTarget(path, self.producer.data["c"])
        self.assertEqual(spoiled, [8])
        # found by the whole file's hash at the end, then fetched again from chunk 8
        self.assertEqual(sum(self.sent), 20 + (20 - 8))
        # and the final name was given once, to the repaired file only
        self.assertEqual(len(names), 1)
        self.assertNotIn(path.basename(), names[0])

    def test_chunksAreNotHashedOneByOneWhenTheWholeMatches(self) -> None:
        """A clean download hashes each byte once (the whole file), not per chunk too."""
        self.stage("h", 20 * CHUNK_SIZE)
        hashed: list[int] = []
        realSha256 = hashlib.sha256

        def counting(data: bytes = b"") -> Any:
            hashed.append(len(data))
            return realSha256(data)

        self.patch(hashlib, "sha256", counting)  # the module: every caller's
        path = drive(self.connections, self.download("h"))
        self.assertOnlyTarget(path, self.producer.data["h"])
        self.assertNotIn(CHUNK_SIZE, hashed)  # (the empty ones start whole-file hashes)

    def test_persistentlyBadChunkFails(self) -> None:
        self.stage("d", 10 * CHUNK_SIZE)
        staged = self.harness.artifacts._staged["d"]
        artifact = staged.path
        artifact.setContent(b"\0" + artifact.getContent()[1:])  # damaged after its manifest
        error = self.assertRaises(BackupRemoteError, drive, self.connections,
                                  self.download("d"))
        self.assertEqual(error.code, errors.VERIFICATION_FAILED)
        self.assertIn("chunk 0 failed its SHA-256 check", error.message)
        # nothing under the final name; the partial files stay for a resume (re-checked)
        name = self.client.call(ListFiles, runId="d")["manifest"].files[0].name
        self.assertFalse(self.folder.child(name).exists())
        self.assertTrue(self.folder.child(name + ".part").exists())

    def test_releasedArtifactIsExpired(self) -> None:
        self.stage("x")
        self.client.call(ReleaseArtifact, runId="x")
        error = self.assertRaises(BackupRemoteError, drive, self.connections,
                                  self.download("x"))
        self.assertEqual(error.code, errors.ARTIFACT_EXPIRED)

    def test_twoDownloadsIntoOneFolder(self) -> None:
        self.stage("t", 30 * CHUNK_SIZE)
        first = self.download("t")
        while not self.connections.chunksReceived:
            self.connections.step()
        other = LoopbackConnections(self)
        error = self.assertRaises(BackupRemoteError, drive, other, self.download("t", other))
        self.assertEqual(error.code, errors.CONFLICT)
        self.assertIn("another download", error.message)
        path = drive(self.connections, first)
        self.assertOnlyTarget(path, self.producer.data["t"])

    def test_stalledTransferIsResumed(self) -> None:
        """
        The client stops acknowledging boxes (its disk is stuck) while its
        connection stays up: the server aborts the transfer after its stall
        timeout, and the download resumes on the same connection from the
        first chunk it lacks.
        """
        self.stage("z", 100 * CHUNK_SIZE)
        timeout = 60.0  # server.toml [limits] transfer_stall_timeout, by default
        receivers = self.connections.transfers
        chunk, aborted = receivers.chunk, receivers.aborted
        held: list[Deferred[Any]] = []
        abortions: list[tuple[str, str]] = []

        def stuck(transferId: str, index: int, chunks: list[bytes]) -> Any:
            answer = chunk(transferId, index, chunks)
            if index < 2 * CHUNKS_PER_BOX or abortions:
                return answer
            held.append(Deferred())  # the answer (the acknowledgement) never comes
            return held[-1]

        def abort(transferId: str, errorCode: str, errorMessage: str) -> Any:
            abortions.append((errorCode, errorMessage))
            result = aborted(transferId, errorCode, errorMessage)
            for answer in held:  # the disk comes back: acknowledgements, too late
                answer.callback({})
            return result

        self.patch(receivers, "chunk", stuck)
        self.patch(receivers, "aborted", abort)
        started = self.harness.clock.seconds()
        path = drive(self.connections, self.download("z"))
        self.assertOnlyTarget(path, self.producer.data["z"])
        self.assertEqual([code for code, _ in abortions], [errors.TIMEOUT])
        self.assertEqual(len(held), WINDOW_BOXES)
        self.assertLess(self.harness.clock.seconds() - started, timeout + 10)
        self.assertEqual(len(self.connections.loopbacks), 1)  # the connection stayed up
        self.assertEqual(sum(self.sent), 100)  # resumed: no chunk was sent twice
        self.assertEqual(self.harness.metrics.counters["transfers.stalled"], 1)
        self.assertEqual(self.harness.transfers.active, [])

    def test_twoClientsAtOnce(self) -> None:
        self.stage("s", 30 * CHUNK_SIZE)
        other = LoopbackConnections(self)
        elsewhere = FilePath(self.mktemp())
        first = self.download("s")
        second = Deferred.fromCoroutine(downloadRun(
            other, other.reactor, "s", elsewhere, None, runInThread=synchronously,
            threaded=False))
        results: list[Any] = []
        first.addBoth(results.append)
        second.addBoth(results.append)
        for _ in range(10_000):
            if len(results) == 2:
                break
            if not (self.connections.step() | other.step()):
                self.harness.clock.advance(1)
        data = self.producer.data["s"]
        self.assertEqual([r.getContent() for r in results], [data, data])


class ThreadedClock(Clock):
    """A Clock whose C{callFromThread} queues calls for the test to run."""

    def __init__(self) -> None:
        super().__init__()
        self.fromThreads: queue.Queue[Any] = queue.Queue()

    def callFromThread(self, f: Any, *args: Any) -> None:
        self.fromThreads.put((f, args))

    def runCalls(self, timeout: float = 5.0) -> None:
        f, args = self.fromThreads.get(timeout=timeout)
        f(*args)

    def runUntilFired(self, waited: Deferred[Any]) -> None:
        """Run the writer thread's calls until C{waited} has fired."""
        while not waited.called:
            self.runCalls()


class ChunkWriterTests(SynchronousTestCase):
    """The writer thread's bounded queue: answers are withheld while the disk is behind."""

    def setUp(self) -> None:
        self.data = os.urandom(40 * CHUNK_SIZE)
        chunks = [self.data[i:i + CHUNK_SIZE] for i in range(0, len(self.data), CHUNK_SIZE)]
        self.chunks = chunks
        digests = self.digests = b"".join(hashlib.sha256(c).digest() for c in chunks)
        entry = FileEntry("f", "out.bin", len(self.data), hashlib.sha256(self.data).hexdigest(),
                          CHUNK_SIZE, len(chunks))
        self.part = PartFile(FilePath(self.mktemp()), "out.bin", entry)
        self.part.acquire()
        self.addCleanup(self.part.close)
        self.part.saveDigests(digests)
        good, whole = self.part.recheck(digests)
        self.clock = ThreadedClock()
        self.bad: list[int] = []
        self.writer = ChunkWriter(self.part, digests, good, whole, self.clock.callFromThread,
                                  self.bad.append, self.fail, clock=self.clock, limit=2)

    def test_backPressure(self) -> None:
        # the disk is stuck (the thread has not started): two boxes fit, the rest wait
        answers = [self.writer.put(i, [self.chunks[i]]) for i in range(6)]
        self.assertEqual([a is None for a in answers], [True, True, False, False, False, False])
        fired: list[Any] = []
        for answer in answers[2:]:
            answer.addCallback(fired.append)
        self.writer.start()
        while len(fired) < 4:
            self.clock.runCalls()
        self.assertEqual(fired, [{}] * 4)
        self.clock.runUntilFired(self.writer.flush())
        self.assertEqual(self.writer.nextChunk, 6)
        self.clock.runUntilFired(self.writer.close())
        self.assertEqual(self.part.part.getContent(), self.data[:6 * CHUNK_SIZE])
        self.assertEqual(self.bad, [])

    def test_badChunkIsReportedAndNothingAfterIt(self) -> None:
        self.writer.start()
        self.writer.put(0, [self.chunks[0], b"garbage", self.chunks[2]])
        self.writer.put(3, [self.chunks[3]])
        self.clock.runUntilFired(self.writer.flush())
        self.assertEqual((self.bad, self.writer.nextChunk), ([1], 1))
        self.writer.put(1, self.chunks[1:4])
        self.clock.runUntilFired(self.writer.flush())
        self.clock.runUntilFired(self.writer.close())
        self.assertEqual(self.writer.nextChunk, 4)

    def test_withoutVerifyChunksAreWrittenUnchecked(self) -> None:
        """The download's first pass: the whole file's hash, not the chunks', decides."""
        self.writer.verify = False
        self.writer.start()
        self.writer.put(0, [self.chunks[0], b"x" * CHUNK_SIZE, self.chunks[2]])
        self.clock.runUntilFired(self.writer.flush())
        self.clock.runUntilFired(self.writer.close())
        self.assertEqual((self.bad, self.writer.nextChunk), ([], 3))
        self.assertNotEqual(self.writer.wholeDigest(),
                            hashlib.sha256(self.data[:3 * CHUNK_SIZE]).hexdigest())
        self.assertEqual(self.part.recheck(self.digests)[0], 1)

    def test_periodicSyncLetsTheWriterGoOn(self) -> None:
        """
        The progress made durable every few seconds is made so beside the
        writer, not in its way: while that sync is held, the writer writes
        every box after it; a flush then waits for it, and records them all.
        """
        writtenAll = threading.Event()
        recorded: list[tuple[int, int]] = []
        record = self.part.recordProgress

        def heldRecord(chunks: int) -> None:
            # holds the sync until the writer has written all six chunks (or gives up)
            deadline = time.monotonic() + 30
            while self.writer.nextChunk < 6 and time.monotonic() < deadline:
                time.sleep(0.001)
            recorded.append((chunks, self.writer.nextChunk))
            writtenAll.set()
            record(chunks)

        self.patch(self.part, "recordProgress", heldRecord)
        self.clock.advance(SYNC_SECONDS)
        self.writer.start()
        for index in range(6):
            self.writer.put(index, [self.chunks[index]])
        self.assertTrue(writtenAll.wait(60))
        # asked after the first box; the other five were written while it was held
        self.assertEqual(recorded, [(1, 6)])
        self.clock.runUntilFired(self.writer.flush())
        self.assertEqual(json.loads(self.part.progress.getContent())["chunks"], 6)
        self.clock.runUntilFired(self.writer.close())
        self.assertEqual(self.part.part.getContent(), self.data[:6 * CHUNK_SIZE])

    def test_failedPeriodicSyncFailsTheDownload(self) -> None:
        """A sync that failed in the background stops the writer with its error."""
        failures: list[BaseException] = []
        writer = ChunkWriter(self.part, self.digests, 0, hashlib.sha256(),
                             self.clock.callFromThread, self.bad.append, failures.append,
                             clock=self.clock, limit=2)

        def brokenDisk(chunks: int) -> None:
            raise OSError(errno.EIO, "input/output error")

        self.patch(self.part, "recordProgress", brokenDisk)
        self.clock.advance(SYNC_SECONDS)
        writer.start()
        for index in range(3):
            writer.put(index, [self.chunks[index]])
        flushed = writer.flush()
        toldWhenFlushed: list[int] = []
        flushed.addCallback(lambda _: toldWhenFlushed.append(len(failures)))
        self.clock.runUntilFired(flushed)
        self.assertEqual([error.errno for error in failures], [errno.EIO])  # type: ignore[attr-defined]
        self.assertIs(writer.failure, failures[0])
        # the flush resumes a download that must already know (it would stream on)
        self.assertEqual(toldWhenFlushed, [1])

    def test_flushesPendingAtCloseAreAnswered(self) -> None:
        """A flush still queued when the writer closes fires; one asked after close at once."""
        self.writer.start()
        self.writer.put(0, [self.chunks[0]])
        pending = self.writer.flush()
        closed = self.writer.close()
        self.assertTrue(self.writer.flush().called)
        self.clock.runUntilFired(closed)
        self.assertTrue(pending.called)

    def test_joinWaitsForBothThreads(self) -> None:
        """L{ChunkWriter.join}: the writer and the syncer are gone when it returns."""
        self.writer.start()
        self.writer.put(0, [self.chunks[0]])
        closed = self.writer.close()
        self.writer.join()
        threads = {thread.name for thread in threading.enumerate()}
        self.assertNotIn("backupremote-chunk-writer", threads)
        self.assertNotIn("backupremote-chunk-syncer", threads)
        self.clock.runUntilFired(closed)


class DurableProgressTests(SynchronousTestCase):
    """The syncing thread: newest request wins, in order, errors kept for the writer."""

    def setUp(self) -> None:
        self.recorded: list[int] = []
        self.release = threading.Event()
        self.started = threading.Event()
        path = self.mktemp()
        self.descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, self.descriptor)
        self.durable = DurableProgress(self)  # type: ignore[arg-type]
        self.durable.start()
        self.addCleanup(self.durable.stop)

    def recordProgress(self, chunks: int) -> None:
        self.started.set()
        self.assertTrue(self.release.wait(30))
        if chunks < 0:
            raise OSError(errno.ENOSPC, "no space left on device")
        self.recorded.append(chunks)

    def test_requestsWhileBusyCollapseToTheNewest(self) -> None:
        self.durable.request(1)
        self.assertTrue(self.started.wait(30))
        for chunks in (2, 3, 4):
            self.durable.request(chunks)
        self.release.set()
        self.durable.drain()
        self.assertEqual(self.recorded, [1, 4])

    def test_errorIsRaisedToTheWriter(self) -> None:
        self.release.set()
        self.durable.request(-1)
        with self.assertRaises(OSError) as raised:
            self.durable.drain()
        self.assertEqual(raised.exception.errno, errno.ENOSPC)
        self.assertRaises(OSError, self.durable.request, 5)
        self.assertEqual(self.recorded, [])

    def test_noMoreWorkAfterAFailedSync(self) -> None:
        """
        A request made while a sync fails is not done: a later fdatasync can
        succeed where the failed one's data was lost.
        """
        self.durable.request(-1)
        self.assertTrue(self.started.wait(30))
        self.durable.request(5)  # taken while the failing sync runs
        self.release.set()
        with self.assertRaises(OSError):
            self.durable.drain()
        self.durable.stop()
        self.assertEqual(self.recorded, [])

    def test_stopFinishesTheRequestItHolds(self) -> None:
        self.durable.request(7)
        self.assertTrue(self.started.wait(30))
        self.release.set()
        self.durable.stop()
        self.assertEqual(self.recorded, [7])
