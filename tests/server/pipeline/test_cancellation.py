"""
Cancelling and timing out in every stage, on SQLite (no server needed):
the threads stop, the children's process groups are killed, and every file
of the run is removed before the error comes back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import TestCase

from backupremote.protocol.errors import TIMEOUT, BackupRemoteError
from backupremote.server.engines import sqlite as sqliteEngine
from backupremote.server.engines.base import Target
from backupremote.server.pipeline import PipelineHooks
from backupremote.server.pipeline.inspection import StreamInspector
from tests.databases.servers import startSQLite
from tests.server.pipeline.helpers import (
    ProgressLog,
    fakeToolFolder,
    groupGone,
    makeRunDir,
    realTools,
    runPipeline,
    waitFor,
)

#: An xz that compresses like the real one but never finishes decompressing
#: (zstd is decompressed in-process: see test_cancelDuringZstdVerification).
STUCK_UNXZ = """\
case "$*" in
  *-d*) exec sleep 600 ;;
esac
exec /usr/bin/xz "$@"
"""


def pipelineThreads() -> list[str]:
    return [thread.name for thread in threading.enumerate()
            if thread.name.startswith("backupremote-")]


class CancellationTests(TestCase):
    def slowBackup(self) -> None:
        """Make the SQLite backup copy 8 pages (of 4 KiB) per step, 50 ms a step."""
        original = sqliteEngine.backupInto
        self.patch(sqliteEngine, "BACKUP_STEP_BYTES", 8 * 4096)

        def slow(source: str, destination: str, shouldStop: Callable[[], bool],
                 onProgress: Callable[[int, int], None]) -> int:
            def progress(done: int, total: int) -> None:
                onProgress(done, total)
                time.sleep(0.05)

            return original(source, destination, shouldStop, progress)

        self.patch(sqliteEngine, "backupInto", slow)

    async def bigDatabase(self) -> Target:
        database = await startSQLite(self)
        await database.sql("CREATE TABLE bulk (filler TEXT);\n"
                           "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                           "WHERE i < 2000) INSERT INTO bulk SELECT hex(randomblob(500)) FROM n;\n")
        return Target(engine="sqlite", path=database.path)

    async def test_cancelDuringBackup(self) -> None:
        """The backup thread stops at its next step; its scratch file is removed."""
        target = await self.bigDatabase()
        self.slowBackup()
        runDir = makeRunDir(self)
        progress = ProgressLog()
        running = runPipeline("sqlite", target, runDir, progress=progress, compression="zstd")
        await waitFor(lambda: any(done > 0 for done in progress.bytesOf("dump")))
        self.assertEqual(os.listdir(runDir.path),
                         ["appdb-20261129T031500Z.sqlite.zst.partial.backup"])
        running.cancel()
        await self.assertFailure(running, CancelledError)
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(pipelineThreads(), [])

    async def test_timeoutDuringBackup(self) -> None:
        target = await self.bigDatabase()
        self.slowBackup()
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            runPipeline("sqlite", target, runDir, compression="none", timeoutSeconds=1),
            BackupRemoteError)
        self.assertEqual(error.code, TIMEOUT)
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(pipelineThreads(), [])

    async def verificationStuck(self, **options: Any) -> tuple[Any, dict[str, int], Any]:
        target = await self.bigDatabase()
        runDir = makeRunDir(self)
        pids: dict[str, int] = {}
        tools = realTools(fakeToolFolder(self, xz=STUCK_UNXZ))
        running = runPipeline("sqlite", target, runDir, tools=tools, compression="xz", level=0,
                              verification="full", hooks=PipelineHooks(spawned=pids.__setitem__),
                              **options)
        return running, pids, runDir

    async def test_cancelDuringVerification(self) -> None:
        """
        A decompressor that never ends: cancelling kills it, stops the
        reading threads, and removes the artifact.
        """
        running, pids, runDir = await self.verificationStuck()
        await waitFor(lambda: "decompressor" in pids)
        running.cancel()
        await self.assertFailure(running, CancelledError)
        self.assertTrue(groupGone(pids["decompressor"]))
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(pipelineThreads(), [])

    async def test_timeoutDuringVerification(self) -> None:
        running, pids, runDir = await self.verificationStuck(timeoutSeconds=2)
        error = await self.assertFailure(running, BackupRemoteError)
        self.assertEqual(error.code, TIMEOUT)
        self.assertTrue(groupGone(pids["decompressor"]))
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(pipelineThreads(), [])

    async def test_cancelDuringZstdVerification(self) -> None:
        """
        zstd decompressing in the reading thread, slowly: cancelling stops
        the thread at its next chunk, and the artifact and the scratch copy
        are removed.
        """
        target = await self.bigDatabase()
        original = StreamInspector.feed

        def slowFeed(inspector: StreamInspector, data: Any) -> None:
            time.sleep(0.02)
            original(inspector, data)

        self.patch(StreamInspector, "feed", slowFeed)
        runDir = makeRunDir(self)
        progress = ProgressLog()
        running = runPipeline("sqlite", target, runDir, progress=progress, compression="zstd",
                              verification="full", hooks=PipelineHooks(chunkSize=4096))
        await waitFor(lambda: progress.bytesOf("verification"))
        self.assertIn("appdb-20261129T031500Z.sqlite.zst.partial.verify.sqlite",
                      os.listdir(runDir.path))
        running.cancel()
        await self.assertFailure(running, CancelledError)
        self.assertEqual(os.listdir(runDir.path), [])
        self.assertEqual(pipelineThreads(), [])
