"""Manifests, chunk hashes and who may see them."""

from __future__ import annotations

import hashlib

from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.features import DEFAULT_FEATURES, REMOTE_DOWNLOAD
from backupremote.protocol import errors
from backupremote.protocol.runs import ExecuteBackup
from backupremote.protocol.transfers import (
    CHUNK_SIZE,
    HASHES_PER_ANSWER,
    FileChunkHashes,
    FileTransferStart,
    ListFiles,
    ReleaseArtifact,
)
from tests.fixtures import START
from tests.server.transfers.helpers import StagingMixin


class ManifestTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        self.setUpStaging(artifactTtl=3600.0)

    def test_manifestDescribesTheArtifact(self) -> None:
        size = 3 * CHUNK_SIZE + 17
        status = self.stage("m1", size)
        data = self.producer.data["m1"]
        manifest = self.client.call(ListFiles, runId="m1")["manifest"]
        self.assertEqual(manifest.runId, "m1")
        [entry] = manifest.files
        self.assertEqual(entry.fileId, status.artifact.fileId)
        self.assertEqual(entry.name, status.artifact.name)
        self.assertEqual((entry.sizeBytes, entry.chunkSize, entry.chunkCount),
                         (size, CHUNK_SIZE, 4))
        self.assertEqual(entry.sha256, hashlib.sha256(data).hexdigest())
        self.assertEqual(manifest.createdAt, START)
        self.assertEqual((manifest.expiresAt - manifest.createdAt).total_seconds(), 3600)
        hashes = self.client.call(FileChunkHashes, fileId=entry.fileId, start=0)["hashes"]
        expected = b"".join(hashlib.sha256(data[i:i + CHUNK_SIZE]).digest()
                            for i in range(0, size, CHUNK_SIZE))
        self.assertEqual(hashes, expected)
        self.assertEqual(self.client.call(FileChunkHashes, fileId=entry.fileId,
                                          start=3)["hashes"], expected[96:])
        self.assertEqual(self.client.call(FileChunkHashes, fileId=entry.fileId,
                                          start=4)["hashes"], b"")

    def test_hashesArePaged(self) -> None:
        self.stage("big", (HASHES_PER_ANSWER + 5) * CHUNK_SIZE)
        entry = self.client.call(ListFiles, runId="big")["manifest"].files[0]
        first = self.client.call(FileChunkHashes, fileId=entry.fileId, start=0)["hashes"]
        rest = self.client.call(FileChunkHashes, fileId=entry.fileId,
                                start=HASHES_PER_ANSWER)["hashes"]
        self.assertEqual((len(first), len(rest)), (HASHES_PER_ANSWER * 32, 5 * 32))
        bad = self.client.error(FileChunkHashes, fileId=entry.fileId, start=-1)
        self.assertEqual(bad.code, errors.VALIDATION_FAILED)

    def test_emptyArtifact(self) -> None:
        self.stage("empty", 0)
        entry = self.client.call(ListFiles, runId="empty")["manifest"].files[0]
        self.assertEqual((entry.sizeBytes, entry.chunkCount), (0, 0))
        self.assertEqual(entry.sha256, hashlib.sha256(b"").hexdigest())

    def test_unknownAndForeignIdsAreNotFound(self) -> None:
        self.stage("mine")
        fileId = self.client.call(ListFiles, runId="mine")["manifest"].files[0].fileId
        bob = self.addClient("bob")
        for command, arguments in [
            (ListFiles, {"runId": "mine"}),
            (ListFiles, {"runId": "nope"}),
            (FileChunkHashes, {"fileId": fileId, "start": 0}),
            (FileTransferStart, {"fileId": fileId, "startChunk": 0}),
            (ReleaseArtifact, {"runId": "mine"}),
        ]:
            error = bob.error(command, **arguments)
            self.assertEqual(error.code, errors.NOT_FOUND, (command, error))
            self.assertNotIn(self.harness.staging.runFolder("mine").path, error.message)
        for command, arguments in [(FileChunkHashes, {"fileId": "f00", "start": 0}),
                                   (FileTransferStart, {"fileId": "f00", "startChunk": 0})]:
            self.assertEqual(self.client.error(command, **arguments).code, errors.NOT_FOUND)
        self.assertTrue(self.harness.staging.runFolder("mine").exists())

    def test_unfinishedRunConflicts(self) -> None:
        gate = self.harness.runs.queue  # a run still queued: capacity 0 keeps it waiting
        gate.maxConcurrent = 0
        self.client.call(ExecuteBackup, runId="later", databaseConfigId=self.configId)
        self.assertEqual(self.client.error(ListFiles, runId="later").code, errors.CONFLICT)

    def test_needsTheDownloadFeature(self) -> None:
        self.stage("gated")
        other = self.harness.connect(port=4)
        features = tuple(f for f in DEFAULT_FEATURES if f != REMOTE_DOWNLOAD)
        other.auth(self.harness, license=self.harness.license(features=features))
        error = other.error(ListFiles, runId="gated")
        self.assertEqual(error.code, errors.LICENSE_FEATURE_MISSING)

    def test_manifestSurvivesRestart(self) -> None:
        self.stage("kept")
        before = self.client.call(ListFiles, runId="kept")["manifest"]
        # a new process: nothing in memory, the manifest is read back from staging
        self.harness.artifacts._staged.clear()
        self.harness.artifacts._byFile.clear()
        self.harness.janitor.startService()
        self.assertEqual(self.client.call(ListFiles, runId="kept")["manifest"], before)
        hashes = self.client.call(FileChunkHashes, fileId=before.files[0].fileId, start=0)
        self.assertEqual(len(hashes["hashes"]), before.files[0].chunkCount * 32)
