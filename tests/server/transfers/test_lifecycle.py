"""Staging lifecycle: release, expiry, leases, the start-up sweep and the cap."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.runs import ExecuteBackup, GetExecutionStatus
from backupremote.protocol.transfers import (
    FileChunkHashes,
    FileTransferStart,
    ListFiles,
    ReleaseArtifact,
)
from backupremote.server.staging.expiry import EXPIRY_INTERVAL
from backupremote.server.transfers.manifest import DIGESTS, MANIFEST
from tests.server.transfers.helpers import StagingMixin, folderNames

TTL = 3600.0


class LifecycleTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpStaging(artifactTtl=TTL)
        self.harness.janitor.startService()

    def fileId(self, runId: str) -> str:
        return self.client.call(ListFiles, runId=runId)["manifest"].files[0].fileId

    def assertExpired(self, runId: str, fileId: str) -> None:
        for command, arguments in [(ListFiles, {"runId": runId}),
                                   (FileChunkHashes, {"fileId": fileId, "start": 0}),
                                   (FileTransferStart, {"fileId": fileId, "startChunk": 0})]:
            self.assertEqual(self.client.error(command, **arguments).code,
                             errors.ARTIFACT_EXPIRED, command)

    def staged(self, runId: str) -> bool:
        return self.client.call(GetExecutionStatus, runId=runId)["status"].artifact.staged

    def test_releaseRemovesTheFolder(self) -> None:
        self.stage("a")
        fileId = self.fileId("a")
        self.assertTrue(self.staged("a"))
        self.assertTrue(self.client.call(ReleaseArtifact, runId="a")["released"])
        self.assertFalse(self.staged("a"))
        self.assertEqual(folderNames(self.harness.staging.runs), [])
        self.assertFalse(self.client.call(ReleaseArtifact, runId="a")["released"])
        self.assertExpired("a", fileId)
        # the run itself is still known
        status = self.client.call(GetExecutionStatus, runId="a")["status"]
        self.assertEqual(status.state, "completed")

    def test_releaseDuringATransferWaitsForItsEnd(self) -> None:
        self.stage("b", 3_000_000)
        fileId = self.fileId("b")
        recorder = self.client.client
        recorder.holding = True
        self.client.call(FileTransferStart, fileId=fileId, startChunk=0)
        self.assertTrue(self.client.call(ReleaseArtifact, runId="b")["released"])
        self.assertFalse(self.staged("b"))  # no new download may start
        self.assertTrue(self.harness.staging.runFolder("b").exists())  # leased
        self.assertExpired("b", fileId)  # but no new transfer may start
        recorder.holding = False
        recorder.release()
        self.client.pump.flush()
        self.assertEqual(recorder.received(), self.producer.data["b"])
        self.assertEqual(folderNames(self.harness.staging.runs), [])

    def test_expiryByTtl(self) -> None:
        self.stage("c")
        fileId = self.fileId("c")
        self.harness.clock.advance(TTL - EXPIRY_INTERVAL)
        self.assertTrue(self.harness.staging.runFolder("c").exists())
        self.assertTrue(self.staged("c"))
        self.harness.clock.advance(EXPIRY_INTERVAL)
        self.assertEqual(folderNames(self.harness.staging.runs), [])
        self.assertExpired("c", fileId)
        self.assertFalse(self.staged("c"))

    def test_expirySkipsLeasedArtifacts(self) -> None:
        self.stage("d", 3_000_000)
        fileId = self.fileId("d")
        recorder = self.client.client
        recorder.holding = True
        self.client.call(FileTransferStart, fileId=fileId, startChunk=0)
        self.harness.clock.advance(TTL + EXPIRY_INTERVAL)
        self.assertTrue(self.harness.staging.runFolder("d").exists())
        self.assertExpired("d", fileId)  # past its TTL: no new transfer
        recorder.holding = False
        recorder.release()
        self.client.pump.flush()
        self.assertEqual(recorder.received(), self.producer.data["d"])
        self.assertTrue(self.harness.staging.runFolder("d").exists())
        self.harness.clock.advance(EXPIRY_INTERVAL)
        self.assertEqual(folderNames(self.harness.staging.runs), [])

    def test_startUpSweep(self) -> None:
        self.stage("keep")
        self.stage("released", 3_000_000)
        fileId = self.fileId("released")
        self.client.client.holding = True
        self.client.call(FileTransferStart, fileId=fileId, startChunk=0)
        self.client.call(ReleaseArtifact, runId="released")
        orphan = self.harness.staging.runFolder("orphan")
        orphan.makedirs()
        orphan.child("x.bin").setContent(b"left by someone")
        self.harness.staging.runFolder("keep").child(MANIFEST + ".tmp").setContent(b"torn")
        # the server dies mid-transfer; a new one starts on the same staging
        self.harness.janitor.stopService()
        self.harness.artifacts._staged.clear()
        self.harness.artifacts._byFile.clear()
        self.harness.janitor.startService()
        self.assertEqual(folderNames(self.harness.staging.runs), ["keep"])
        self.assertEqual(len(folderNames(self.harness.staging.runFolder("keep"))), 3)  # artifact, digests, manifest
        self.assertNotIn(MANIFEST + ".tmp", folderNames(self.harness.staging.runFolder("keep")))
        self.assertEqual(self.client.call(ListFiles, runId="keep")["manifest"].runId, "keep")

    def test_keptArtifactWithoutManifest(self) -> None:
        """A run whose post-script failed keeps its artifact without a manifest."""
        self.stage("script")
        folder = self.harness.staging.runFolder("script")
        for name in (MANIFEST, DIGESTS):
            folder.child(name).remove()
        self.harness.artifacts._staged.clear()
        self.harness.artifacts._byFile.clear()
        manifest = self.client.call(ListFiles, runId="script")["manifest"]
        self.assertEqual(manifest.files[0].sizeBytes, len(self.producer.data["script"]))
        for name in (MANIFEST, DIGESTS):
            folder.child(name).remove()
        self.harness.artifacts._staged.clear()
        os.utime(folder.path, (0, self.harness.clock.seconds() - TTL))
        self.harness.clock.advance(EXPIRY_INTERVAL)
        self.assertEqual(folderNames(self.harness.staging.runs), [])

    def test_stagingCap(self) -> None:
        self.stage("e", 2_000_000)
        self.harness.withConfig(stagingMaxBytes=2_500_000)
        self.preflightReport = type(self.preflightReport)(
            ok=True, blockers=[], warnings=[], sizeEstimate=1_000_000)
        error = self.client.error(ExecuteBackup, runId="f", databaseConfigId=self.configId)
        self.assertEqual(error.code, errors.STAGING_FULL)
        self.assertEqual(self.client.error(GetExecutionStatus, runId="f").code, errors.NOT_FOUND)
        self.client.call(ReleaseArtifact, runId="e")
        self.stage("f")
