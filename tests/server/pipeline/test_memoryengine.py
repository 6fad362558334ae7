"""
Whole runs through the real pipeline with the in-memory engine twin
(L{backupremote.testing.MemoryEngine}): no database, no dump program, but
the real compression, hashing, verification and cleanup.
"""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import DUMP_FAILED, VERIFICATION_FAILED, BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.pipeline import Artifact, produceArtifact
from backupremote.testing import MEMORY_DATABASE, MemoryEngine
from tests.server.pipeline.helpers import (
    COMPRESSIONS,
    ProgressLog,
    assertArtifactFiles,
    assertHonestProgress,
    decompressed,
    fileDigest,
    makeRunDir,
    realTools,
)


def run(engine: IEngine, runDir: FilePath, progress: ProgressLog | None = None,
        **options: object) -> Deferred[Artifact]:
    return Deferred.fromCoroutine(produceArtifact(
        reactor, engine, Target(engine.name), BackupOptions(**options),  # type: ignore[arg-type]
        realTools(), runDir, "memory-20261129T031500Z", progress or ProgressLog(), None))


class MemoryEnginePipelineTests(TestCase):
    async def test_everyCompressionAndVerification(self) -> None:
        """
        Every compression and verification mode gives an artifact that
        decompresses (with the standard tools) to the database's bytes,
        with honest progress and nothing else left in the run folder.
        """
        for compression in COMPRESSIONS:
            for verification in ("none", "stream", "full"):
                runDir = makeRunDir(self)
                progress = ProgressLog()
                artifact = await run(MemoryEngine(), runDir, progress, compression=compression,
                                     verification=verification)
                self.assertEqual(await decompressed(artifact.path.path, compression),
                                 MEMORY_DATABASE)
                self.assertEqual(artifact.digest, fileDigest(artifact.path.path))
                self.assertTrue(artifact.name.startswith("memory-20261129T031500Z.raw"))
                assertArtifactFiles(self, runDir, artifact)
                assertHonestProgress(self, progress, artifact)
                self.assertEqual(progress.stages()[0], "dump")

    async def test_damagedBackupFailsFullVerification(self) -> None:
        """The engine's own file check runs: a wrong backup fails, its files removed."""
        for compression in ("none", "zstd", "gzip"):
            runDir = makeRunDir(self)
            error = await self.assertFailure(
                run(MemoryEngine(damageAt=len(MEMORY_DATABASE) // 2), runDir,
                    compression=compression),
                BackupRemoteError)
            self.assertEqual(error.code, VERIFICATION_FAILED)
            self.assertIn("the memory check of the backup failed", error.message)
            self.assertEqual(os.listdir(runDir.path), [])

    async def test_damagedBackupFailsStreamVerification(self) -> None:
        """The engine's head check runs on the decompressed stream."""
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            run(MemoryEngine(damageAt=0), runDir, verification="stream"), BackupRemoteError)
        self.assertEqual(error.code, VERIFICATION_FAILED)
        self.assertIn("does not start with its format's header", error.message)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_failedDump(self) -> None:
        """What the engine says a failure means reaches the caller; nothing is left."""
        runDir = makeRunDir(self)
        engine = MemoryEngine(failDump=BackupRemoteError(DUMP_FAILED, "the memory is gone"))
        error = await self.assertFailure(run(engine, runDir), BackupRemoteError)
        self.assertEqual((error.code, error.message), (DUMP_FAILED, "the memory is gone"))
        self.assertEqual(os.listdir(runDir.path), [])
