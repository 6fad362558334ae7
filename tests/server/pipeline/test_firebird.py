"""
The pipeline on Firebird: an embedded database file in every compression,
verified by a gbak restore and restored again with gbak; a private
Firebird server reached over TCP with the password in the environment.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import DUMP_FAILED, BackupRemoteError
from backupremote.server.engines.base import Target
from backupremote.server.engines.firebird import looksLikeGbakBackup
from tests.databases.servers import (
    ROW_COUNT,
    TABLE,
    _baseEnv,
    checkProcess,
    startFirebird,
    startFirebirdServer,
    wrongPassword,
)
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

ROWS = f"SELECT id, name FROM {TABLE} ORDER BY id;\n"


async def restoredRows(content: bytes) -> str:
    """Restore a gbak backup into a new local file with gbak; its rows, as isql prints them."""
    folder = tempfile.mkdtemp(prefix="br-fbrestore-")
    try:
        backup = os.path.join(folder, "restore.fbk")
        database = os.path.join(folder, "restored.fdb")
        FilePath(backup).setContent(content)
        env = _baseEnv(ISC_USER="SYSDBA")
        await checkProcess(["gbak", "-c", backup, database], env)
        return await checkProcess(["isql-fb", "-q", "-b", database], env, ROWS)
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


class FirebirdPipelineTests(TestCase):
    async def test_everyCompressionRestores(self) -> None:
        """
        Every compression of an embedded database's backup, verified by a
        gbak restore into a scratch file (removed), restores with gbak to
        the same rows.
        """
        database = await startFirebird(self)
        expected = await database.sql(ROWS)
        self.assertEqual(expected.count("item "), ROW_COUNT)
        for compression in COMPRESSIONS:
            runDir = makeRunDir(self)
            progress = ProgressLog()
            artifact = await runPipeline("firebird", Target(engine="firebird",
                                                            path=database.path),
                                         runDir, progress=progress, compression=compression,
                                         verification="full")
            assertHonestProgress(self, progress, artifact, dumpSlack=64 * 1024)
            self.assertTrue(artifact.name.startswith("appdb-20261129T031500Z.fbk"))
            assertArtifactFiles(self, runDir, artifact)
            self.assertEqual(artifact.digest, fileDigest(artifact.path.path))
            content = await decompressed(artifact.path.path, compression)
            self.assertTrue(looksLikeGbakBackup(content[:64]))
            self.assertEqual(await restoredRows(content), expected, compression)

    async def test_server(self) -> None:
        """
        A Firebird server over TCP: the password travels in ISC_PASSWORD;
        a wrong one is DUMP_FAILED without the password in the message.
        """
        server = await startFirebirdServer(self)
        expected = await server.sql(ROWS)

        def target(**changes: Any) -> Target:
            values = {"engine": "firebird", "host": server.host, "port": server.port,
                      "database": server.database, "user": server.user,
                      "password": server.password}
            values.update(changes)
            return Target(**values)

        artifact = await runPipeline("firebird", target(), makeRunDir(self),
                                     compression="zstd", verification="full")
        content = await decompressed(artifact.path.path, "zstd")
        self.assertEqual(await restoredRows(content), expected)
        runDir = makeRunDir(self)
        password = wrongPassword(server.password)
        error = await self.assertFailure(
            runPipeline("firebird", target(password=password), runDir), BackupRemoteError)
        self.assertEqual(error.code, DUMP_FAILED)
        self.assertIn("password", error.message.lower())
        self.assertNotIn(password, error.message)
        self.assertEqual(os.listdir(runDir.path), [])
