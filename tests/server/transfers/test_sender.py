"""The chunk stream: window, back-pressure, progress, completion, stop, capacity."""

from __future__ import annotations

import hashlib

from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    CHUNKS_PER_BOX,
    WINDOW_BOXES,
    FileTransferStart,
    FileTransferStop,
    ListFiles,
)
from backupremote.protocol.session import Capabilities
from backupremote.server.transfers.sender import PROGRESS_INTERVAL
from tests.server.transfers.helpers import StagingMixin

BOX = CHUNKS_PER_BOX * CHUNK_SIZE


class SenderTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        # one client may use every slot here: the per-client share is in test_fairness
        self.setUpStaging(maxConcurrentTransfers=2, maxTransfersPerClient=2)
        self.size = 40 * BOX + 123
        self.stage("r", self.size)
        self.data = self.producer.data["r"]
        self.entry = self.client.call(ListFiles, runId="r")["manifest"].files[0]

    def start(self, loopback: object = None, startChunk: int = 0) -> str:
        loopback = loopback or self.client
        answer = loopback.call(FileTransferStart, fileId=self.entry.fileId,  # type: ignore
                               startChunk=startChunk)
        self.assertEqual(answer["chunkCount"], self.entry.chunkCount)
        return answer["transferId"]

    def test_wholeFileAndCompletion(self) -> None:
        transferId = self.start()
        recorder = self.client.client
        self.assertEqual(recorder.received(transferId), self.data)
        self.assertTrue(all(len(chunks) <= CHUNKS_PER_BOX for _, _, chunks in recorder.boxes))
        self.assertEqual([i for _, i, _ in recorder.boxes],
                         list(range(0, self.entry.chunkCount, CHUNKS_PER_BOX)))
        self.assertEqual(recorder.completed,
                         [(transferId, self.size, hashlib.sha256(self.data).hexdigest())])
        self.assertEqual(self.harness.transfers.active, [])
        self.assertEqual(self.harness.artifacts._staged["r"].leases, 0)

    def test_startChunk(self) -> None:
        transferId = self.start(startChunk=9)
        self.assertEqual(self.client.client.received(transferId), self.data[9 * CHUNK_SIZE:])
        last = self.start(startChunk=self.entry.chunkCount)
        self.assertEqual(self.client.client.received(last), b"")
        self.assertEqual(self.client.client.completed[-1][0], last)
        bad = self.client.error(FileTransferStart, fileId=self.entry.fileId,
                                startChunk=self.entry.chunkCount + 1)
        self.assertEqual(bad.code, errors.VALIDATION_FAILED)

    def test_windowBoundsUnacknowledgedBoxes(self) -> None:
        recorder = self.client.client
        recorder.holding = True
        transferId = self.start()
        self.assertEqual(len(recorder.boxes), WINDOW_BOXES)
        recorder.release(3)
        self.client.pump.flush()
        self.assertEqual(len(recorder.boxes), WINDOW_BOXES + 3)
        self.assertEqual(len(recorder.held), WINDOW_BOXES)
        while recorder.held:
            recorder.release()
            self.client.pump.flush()
        self.assertEqual(recorder.received(transferId), self.data)
        self.assertEqual(len(recorder.completed), 1)

    def test_offeredChunkLimitsAreWhatTheStreamDoes(self) -> None:
        """capabilities' chunkLimits: the largest chunk, box and window a transfer really sends."""
        limits = self.client.call(Capabilities)["capabilities"].offer.chunkLimits
        self.assertEqual((limits.maxChunkBytes, limits.chunksPerBox, limits.maxChunksInFlight),
                         (CHUNK_SIZE, CHUNKS_PER_BOX, CHUNKS_PER_BOX * WINDOW_BOXES))
        recorder = self.client.client
        recorder.holding = True
        self.start()
        inFlight = [chunk for _, _, chunks in recorder.boxes for chunk in chunks]
        self.assertEqual(len(inFlight), limits.maxChunksInFlight)
        self.assertEqual(max(len(chunks) for _, _, chunks in recorder.boxes),
                         limits.chunksPerBox)
        self.assertEqual(max(len(chunk) for chunk in inFlight), limits.maxChunkBytes)

    def test_pausedTransportStopsTheSender(self) -> None:
        recorder = self.client.client
        recorder.holding = True
        transferId = self.start()
        transport = self.client.server.transport
        pump = transport.producer
        self.assertIsNotNone(pump)
        pump.pauseProducing()  # what TLS does when its buffer is full
        recorder.release()
        self.client.pump.flush()
        self.assertEqual(len(recorder.boxes), WINDOW_BOXES)  # nothing new while paused
        pump.resumeProducing()
        self.client.pump.flush()
        self.assertEqual(len(recorder.boxes), 2 * WINDOW_BOXES)
        recorder.holding = False
        recorder.release()
        self.client.pump.flush()
        self.assertEqual(recorder.received(transferId), self.data)
        self.assertIsNone(transport.producer)  # unregistered once no transfer is left

    def test_progressIsThrottled(self) -> None:
        recorder = self.client.client
        recorder.holding = True
        transferId = self.start()
        steps = 0
        while recorder.held:
            recorder.release(1)
            self.client.pump.flush()
            self.harness.clock.advance(PROGRESS_INTERVAL / 4)
            steps += 1
        self.assertEqual(steps, 41)  # one box answered per step, a quarter interval apart
        self.assertIn(len(recorder.progress), (steps // 4 - 1, steps // 4))
        self.assertEqual({t for t, _, _ in recorder.progress}, {transferId})
        sent = [chunks for _, chunks, _ in recorder.progress]
        self.assertEqual(sent, sorted(sent))

    def test_stopEndsTheTransferAndItsLease(self) -> None:
        recorder = self.client.client
        recorder.holding = True
        transferId = self.start()
        self.assertEqual(self.harness.artifacts._staged["r"].leases, 1)
        self.client.call(FileTransferStop, transferId=transferId)
        recorder.release()
        self.client.pump.flush()
        self.assertEqual(len(recorder.boxes), WINDOW_BOXES)
        self.assertEqual(self.harness.transfers.active, [])
        self.assertEqual(self.harness.artifacts._staged["r"].leases, 0)
        again = self.client.error(FileTransferStop, transferId=transferId)
        self.assertEqual(again.code, errors.NOT_FOUND)

    def test_otherConnectionsCannotStopIt(self) -> None:
        self.client.client.holding = True
        transferId = self.start()
        other = self.connect(port=2)
        self.assertEqual(other.error(FileTransferStop, transferId=transferId).code,
                         errors.NOT_FOUND)
        self.assertEqual(len(self.harness.transfers.active), 1)

    def test_refusedChunkEndsTheTransfer(self) -> None:
        recorder = self.client.client
        recorder.holding = True
        self.start()
        recorder.held[0].errback(amp.RemoteAmpError(b"NOT_FOUND", b"no such transfer here"))
        del recorder.held[0]
        self.client.pump.flush()
        self.assertEqual(self.harness.transfers.active, [])

    def test_connectionLossCleansUp(self) -> None:
        self.client.client.holding = True
        self.start()
        self.client.client.transport.loseConnection()
        self.client.pump.flush()
        self.assertEqual(self.harness.transfers.active, [])
        self.assertEqual(self.harness.artifacts._staged["r"].leases, 0)

    def test_stopProducingCleansUp(self) -> None:
        """A real transport stops its producer when the connection is lost."""
        self.client.client.holding = True
        self.start()
        self.client.server.transport.producer.stopProducing()
        self.assertEqual(self.harness.transfers.active, [])

    def test_capacityExceeded(self) -> None:
        self.client.client.holding = True
        self.start()
        other = self.connect(port=2)
        other.client.holding = True
        self.start(other)
        third = self.connect(port=3)
        error = third.error(FileTransferStart, fileId=self.entry.fileId, startChunk=0)
        self.assertEqual(error.code, errors.CAPACITY_EXCEEDED)
        self.client.client.holding = False
        self.client.client.release()
        self.client.pump.flush()
        self.assertEqual(third.client.received(self.start(third)), self.data)

    def test_twoConnectionsEachWithItsPosition(self) -> None:
        other = self.connect(port=2)
        first = self.client.client
        second = other.client
        first.holding = second.holding = True
        a = self.start()
        b = self.start(other, startChunk=20)
        for _ in range(100):
            first.release()
            second.release()
            self.client.pump.flush()
            other.pump.flush()
        self.assertEqual(first.received(a), self.data)
        self.assertEqual(second.received(b), self.data[20 * CHUNK_SIZE:])
        self.assertEqual({t for t, _, _ in first.boxes}, {a})
        self.assertEqual({t for t, _, _ in second.boxes}, {b})

    def test_twoTransfersOnOneConnection(self) -> None:
        a = self.start()
        b = self.start(startChunk=5)
        recorder = self.client.client
        self.assertEqual(recorder.received(a), self.data)
        self.assertEqual(recorder.received(b), self.data[5 * CHUNK_SIZE:])
