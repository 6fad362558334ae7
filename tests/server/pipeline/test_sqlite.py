"""
The pipeline on a real SQLite file: the online backup, every compression,
integrity-checked verification, and the artifact opened as a database.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile

from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import VERIFICATION_FAILED, BackupRemoteError
from backupremote.server.engines.base import Target
from backupremote.server.engines.sqlite import SQLITE_HEADER
from backupremote.server.pipeline import PipelineHooks
from tests.databases.servers import ROW_COUNT, TABLE, startSQLite
from tests.server.pipeline.helpers import (
    assertArtifactFiles,
    COMPRESSIONS,
    decompressed,
    fileDigest,
    makeRunDir,
    ProgressLog,
    assertHonestProgress,
    runPipeline,
)


def rowsDigest(path: str) -> tuple[int, str]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute(f"SELECT id, name FROM {TABLE} ORDER BY id").fetchall()
    finally:
        connection.close()
    return len(rows), hashlib.md5(repr(rows).encode()).hexdigest()


class SQLitePipelineTests(TestCase):
    async def test_everyCompressionRestores(self) -> None:
        """
        Each compression gives an artifact that decompresses (with the
        standard tools) to an SQLite file holding the same rows; the
        artifact's digest is the file's; nothing else is left in the run
        folder.
        """
        database = await startSQLite(self)
        expected = rowsDigest(database.path)
        self.assertEqual(expected[0], ROW_COUNT)
        target = Target(engine="sqlite", path=database.path)
        for compression in COMPRESSIONS:
            runDir = makeRunDir(self)
            progress = ProgressLog()
            artifact = await runPipeline("sqlite", target, runDir, progress=progress,
                                         compression=compression, verification="full",
                                         checksum="blake2b")
            suffix = {"none": "", "gzip": ".gz", "zstd": ".zst", "xz": ".xz", "zip": ".zip"}
            self.assertEqual(artifact.name, f"appdb-20261129T031500Z.sqlite{suffix[compression]}")
            assertArtifactFiles(self, runDir, artifact)
            self.assertEqual(artifact.digest, fileDigest(artifact.path.path, "blake2b"))
            self.assertEqual(artifact.checksum, "blake2b")
            self.assertEqual(artifact.sizeBytes, artifact.path.getsize())
            content = await decompressed(artifact.path.path, compression)
            self.assertTrue(content.startswith(SQLITE_HEADER))
            with tempfile.NamedTemporaryFile(suffix=".sqlite") as restored:
                restored.write(content)
                restored.flush()
                self.assertEqual(rowsDigest(restored.name), expected, compression)
            stages = [timing.stage for timing in artifact.stageTimings]
            self.assertEqual(stages[0], "dump")
            self.assertEqual(stages[-2:], ["verification", "finalizing"])
            self.assertEqual("compression" in stages, compression != "none")
            self.assertIn("dump", progress.stages())
            self.assertIn("verification", progress.stages())
            assertHonestProgress(self, progress, artifact)

    async def test_damagedArtifactFailsVerification(self) -> None:
        """Bytes changed between writing and verification: VERIFICATION_FAILED, nothing left."""
        database = await startSQLite(self)
        runDir = makeRunDir(self)

        def damage(path) -> None:
            with open(path.path, "r+b") as stream:
                stream.seek(100)
                byte = stream.read(1)
                stream.seek(100)
                stream.write(bytes([byte[0] ^ 0xFF]))

        error = await self.assertFailure(
            runPipeline("sqlite", Target(engine="sqlite", path=database.path), runDir,
                        hooks=PipelineHooks(beforeVerification=damage), compression="zstd",
                        verification="none"),
            BackupRemoteError)
        self.assertEqual(error.code, VERIFICATION_FAILED)
        self.assertIn("checksum", error.message)
        self.assertEqual(os.listdir(runDir.path), [])
