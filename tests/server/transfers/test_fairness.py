"""
Transfer slots are shared fairly: a per-client limit, and stalled transfers aborted.

A client that starts transfers and never acknowledges a box (while it still
answers pings) must not keep every other client's downloads out.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import CreateDatabaseConfig, DatabaseConfigInput
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.runs import ExecuteBackup, GetExecutionStatus
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    CHUNKS_PER_BOX,
    WINDOW_BOXES,
    FileTransferStart,
    ListFiles,
)
from tests.server.transfers.helpers import StagingMixin

BOX = CHUNKS_PER_BOX * CHUNK_SIZE
#: more boxes than one window, so that a held transfer is still going
SIZE = 3 * WINDOW_BOXES * BOX + 77
#: the issue's target: another client's download starts within this (clock) time
TARGET = 10.0
#: ``[limits] transfer_stall_timeout`` by default
STALL_TIMEOUT = 60.0


class FairShareTests(StagingMixin, SynchronousTestCase):
    """Alice hogs the transfer slots; Bob still downloads."""

    def setUp(self) -> None:
        self.setUpStaging(maxConcurrentTransfers=4)
        # the connections below answer pings, as a live but stalled client would
        self.harness.withConfig(keepaliveInterval=5.0, keepaliveTimeout=20.0)
        self.stage("a", SIZE)
        self.aliceFile = self.client.call(ListFiles, runId="a")["manifest"].files[0]
        self.bob = self.addClient("bob")
        self.bobFile = self.stageFor(self.bob, "b")
        self.loopbacks = [self.client, self.bob]
        self.warnings: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            if (event.get("log_namespace") == "backupremote.server.transfers"
                    and event["log_level"].name == "warn"):
                self.warnings.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def stageFor(self, loopback: Any, runId: str) -> Any:
        """A run of C{loopback}'s client, from its own configuration: its file entry."""
        database = self.harness.config.sqliteRoots[0].child(runId + ".sqlite3")
        database.setContent(b"")
        configId = loopback.call(CreateDatabaseConfig, config=DatabaseConfigInput(
            name=runId, engine="sqlite", path=database.path))["config"].id
        self.producer.sizes[runId] = SIZE
        loopback.call(ExecuteBackup, runId=runId, databaseConfigId=configId)
        loopback.pump.flush()
        assert loopback.call(GetExecutionStatus, runId=runId)["status"].state == "completed"
        return loopback.call(ListFiles, runId=runId)["manifest"].files[0]

    def wait(self, seconds: float) -> None:
        """Let C{seconds} pass, one at a time, every connection exchanging what it has."""
        for _ in range(int(seconds)):
            self.harness.clock.advance(1)
            for loopback in self.loopbacks:
                loopback.pump.flush()

    def hog(self) -> tuple[list[Any], BackupRemoteError]:
        """
        Alice starts transfers, each on a connection of its own, until the server
        refuses one; she never acknowledges a box. Her connections, and the refusal.
        """
        holders = []
        for port in range(2, 20):
            loopback = self.connect(port=port)
            loopback.client.holding = True
            self.loopbacks.append(loopback)
            try:
                loopback.call(FileTransferStart, fileId=self.aliceFile.fileId, startChunk=0)
            except BackupRemoteError as refusal:
                return holders, refusal
            holders.append(loopback)
        raise AssertionError("the server never refused alice a transfer")

    def bobDownloads(self, within: float) -> str:
        """Bob starts his transfer, retrying each second for C{within} seconds."""
        waited = 0.0
        while True:
            try:
                return self.bob.call(FileTransferStart, fileId=self.bobFile.fileId,
                                     startChunk=0)["transferId"]
            except BackupRemoteError as error:
                self.assertEqual(error.code, errors.CAPACITY_EXCEEDED)
                if waited >= within:
                    raise
            self.wait(1)
            waited += 1

    def test_otherClientStartsWhileOneHoldsAllItMay(self) -> None:
        """The issue's target: A holds all it may; B's download starts within 10 s."""
        holders, refusal = self.hog()
        started = self.harness.clock.seconds()
        transferId = self.bobDownloads(within=TARGET)
        self.assertLessEqual(self.harness.clock.seconds() - started, TARGET)
        self.bob.pump.flush()
        self.assertEqual(self.bob.client.received(transferId), self.producer.data["b"])
        self.assertEqual(len(self.bob.client.completed), 1)
        self.assertEqual(len(holders), 2)  # by default, half of the 4 slots
        self.assertEqual(refusal.code, errors.CAPACITY_EXCEEDED)
        self.assertIn("this client already has 2 transfers active", refusal.message)
        self.assertIn("max_transfers_per_client", refusal.message)

    def test_stalledTransfersAreAbortedAndTheirSlotsFreed(self) -> None:
        """A may hold every slot: they come free after the stall timeout."""
        # no per-client share: A may take everything
        self.harness.withConfig(maxConcurrentTransfers=2, maxTransfersPerClient=3)
        timeout = STALL_TIMEOUT
        holders, refusal = self.hog()
        self.assertEqual(len(holders), 2)
        self.assertIn("the most this server allows", refusal.message)
        self.assertRaises(BackupRemoteError, self.bobDownloads, within=0)

        self.wait(timeout - 1)
        self.assertEqual(len(self.harness.transfers.active), 2)
        self.assertEqual([h.client.aborted for h in holders], [[], []])
        self.wait(1)
        self.assertEqual(self.harness.transfers.active, [])
        self.assertEqual(self.harness.artifacts._staged["a"].leases, 0)
        for holder in holders:
            [(_, code, message)] = holder.client.aborted
            self.assertEqual(code, errors.TIMEOUT)
            self.assertIn("made no progress for 60 s", message)
            self.assertIn("startChunk", message)
            self.assertFalse(holder.closed)  # only the transfer ends, not the connection
        self.assertEqual(self.harness.metrics.counters["transfers.stalled"], 2)
        self.assertEqual(len(self.warnings), 2)
        self.assertIn("its slot is free", self.warnings[0]["log_format"])

        transferId = self.bobDownloads(within=0)
        self.bob.pump.flush()
        self.assertEqual(self.bob.client.received(transferId), self.producer.data["b"])

        # Alice's late acknowledgements change nothing; her resume takes over
        holder = holders[0]
        sent = len(holder.client.boxes)
        holder.client.holding = False
        holder.client.release()
        holder.pump.flush()
        self.assertEqual(len(holder.client.boxes), sent)
        resumeAt = sent * CHUNKS_PER_BOX
        again = holder.call(FileTransferStart, fileId=self.aliceFile.fileId,
                            startChunk=resumeAt)["transferId"]
        holder.pump.flush()
        data = self.producer.data["a"]
        self.assertEqual(holder.client.received(), data)
        self.assertEqual(holder.client.received(again), data[resumeAt * CHUNK_SIZE:])

    def test_stallIsCountedFromTheLastAcknowledgement(self) -> None:
        """A slow transfer that moves is never aborted; once it stops, it is."""
        timeout = STALL_TIMEOUT
        recorder = self.client.client
        recorder.holding = True
        self.client.call(FileTransferStart, fileId=self.aliceFile.fileId, startChunk=0)
        for _ in range(8):  # one box acknowledged every 45 s: 6 minutes, never 60 s still
            self.wait(45)
            recorder.release(1)
            self.client.pump.flush()
        self.assertEqual(len(self.harness.transfers.active), 1)
        self.assertEqual(recorder.aborted, [])
        self.wait(timeout - 1)
        self.assertEqual(len(self.harness.transfers.active), 1)
        self.wait(1)
        self.assertEqual(self.harness.transfers.active, [])
        self.assertEqual(len(recorder.aborted), 1)

    def test_finishedTransferLeavesNoTimer(self) -> None:
        self.client.call(FileTransferStart, fileId=self.aliceFile.fileId, startChunk=0)
        self.client.pump.flush()
        self.assertEqual(len(self.client.client.completed), 1)
        self.assertEqual(self.harness.transfers.active, [])
        pending = [call for call in self.harness.clock.getDelayedCalls()
                   if "_checkStall" in repr(call.func)]
        self.assertEqual(pending, [])
