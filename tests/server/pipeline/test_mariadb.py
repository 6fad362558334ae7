"""
The pipeline on a real MariaDB server: every compression restored into a
fresh database, the option file holding the password removed after the
dump, and a refused password.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import (
    DUMP_FAILED,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.server.engines import mariadb
from backupremote.server.engines.base import Target
from tests.databases.servers import (
    ROW_COUNT,
    TABLE,
    MariaDBServer,
    startMariaDB,
    wrongPassword,
)
from tests.server.pipeline.helpers import (
    assertArtifactFiles,
    COMPRESSIONS,
    decompressed,
    fakeToolFolder,
    fileDigest,
    makeRunDir,
    ProgressLog,
    assertHonestProgress,
    realTools,
    runPipeline,
)

ROWS_DIGEST = (f"SELECT CONCAT(COUNT(*), ' ', MD5(GROUP_CONCAT(id, ':', name ORDER BY id "
               f"SEPARATOR ','))) FROM {TABLE};")


def targetOf(server: MariaDBServer, **changes: Any) -> Target:
    values = {"engine": "mariadb", "host": server.host, "port": server.port,
              "database": server.database, "user": server.user, "password": server.password}
    values.update(changes)
    return Target(**values)


class MariaDBPipelineTests(TestCase):
    def recordOptionFiles(self) -> list[str]:
        """Record the path of every option file the pipeline makes."""
        made: list[str] = []
        original = mariadb.optionsFile

        @contextmanager
        def recording(password: str | None) -> Iterator[str]:
            with original(password) as path:
                made.append(path)
                yield path

        self.patch(mariadb, "optionsFile", recording)
        return made

    async def test_everyCompressionRestores(self) -> None:
        """
        Each compression gives a dump (checked by its trailer) that restores
        into a new database with the same rows; the option file is gone.
        """
        server = await startMariaDB(self)
        expected = (await server.sql(ROWS_DIGEST, database=server.database)).strip()
        self.assertTrue(expected.startswith(f"{ROW_COUNT} "))
        made = self.recordOptionFiles()
        for compression in COMPRESSIONS:
            runDir = makeRunDir(self)
            progress = ProgressLog()
            artifact = await runPipeline("mariadb", targetOf(server), runDir,
                                         progress=progress, compression=compression,
                                         verification="full")
            assertHonestProgress(self, progress, artifact)
            self.assertTrue(artifact.name.startswith("appdb-20261129T031500Z.sql"))
            assertArtifactFiles(self, runDir, artifact)
            self.assertEqual(artifact.digest, fileDigest(artifact.path.path))
            content = await decompressed(artifact.path.path, compression)
            self.assertIn(b"-- Dump completed", content[-200:])
            self.assertNotIn(server.password.encode(), content)
            name = f"restored_{compression}"
            await server.sql(f"CREATE DATABASE {name};")
            result = await server.query(content, server.superuser,  # type: ignore[arg-type]
                                        server.superuserPassword, name)
            self.assertTrue(result.ok, result.err)
            self.assertEqual((await server.sql(ROWS_DIGEST, database=name)).strip(), expected)
        self.assertEqual(len(made), len(COMPRESSIONS))
        for path in made:
            self.assertFalse(os.path.exists(path))
            self.assertFalse(os.path.exists(os.path.dirname(path)))

    async def test_wrongPassword(self) -> None:
        """DUMP_FAILED quoting the server's refusal, without the password; nothing left."""
        server = await startMariaDB(self)
        made = self.recordOptionFiles()
        runDir = makeRunDir(self)
        password = wrongPassword(server.password)
        error = await self.assertFailure(
            runPipeline("mariadb", targetOf(server, password=password), runDir),
            BackupRemoteError)
        self.assertEqual(error.code, DUMP_FAILED)
        self.assertIn("Access denied", error.message)
        self.assertNotIn(password, error.message)
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(len(made), 1)
        self.assertFalse(os.path.exists(made[0]))

    async def test_truncatedDump(self) -> None:
        """A dump that lost its end (no trailer) fails verification "stream"."""
        server = await startMariaDB(self)
        tools = realTools(fakeToolFolder(self, xz=(
            'case "$*" in *--version*|*-d*) exec /usr/bin/xz "$@" ;; esac\n'
            "{ head -c 1500; cat > /dev/null; } | /usr/bin/xz -c\n")))
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            runPipeline("mariadb", targetOf(server), runDir, tools=tools, compression="xz",
                        verification="stream"),
            BackupRemoteError)
        self.assertEqual(error.code, VERIFICATION_FAILED)
        self.assertIn("-- Dump completed", error.message)
        self.assertEqual(os.listdir(runDir.path), [])
