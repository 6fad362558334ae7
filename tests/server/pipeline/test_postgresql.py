"""
The pipeline on a real PostgreSQL server: every compression restored into a
fresh database, both formats, dump failures, cancel, timeout, verification
failures, a full disk, and back-pressure from a slow disk.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from backupremote.childprocess import ioCounters
from backupremote.protocol.errors import (
    COMPRESSION_FAILED,
    DISK_FULL,
    DUMP_FAILED,
    TIMEOUT,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.server.engines.base import Target
from backupremote.server.pipeline import PipelineHooks
from backupremote.server.pipeline.sink import PIPE_SIZE
from tests.databases.servers import (
    ROW_COUNT,
    TABLE,
    PostgreSQLServer,
    checkProcess,
    startPostgreSQL,
    wrongPassword,
)
from tests.server.pipeline.helpers import (
    assertArtifactFiles,
    COMPRESSIONS,
    decompressed,
    fakeToolFolder,
    fileDigest,
    groupGone,
    makeRunDir,
    ProgressLog,
    assertHonestProgress,
    realTools,
    runPipeline,
    STUCK_ZSTD,
    waitFor,
)

ROWS_DIGEST = (f"SELECT count(*) || ' ' || md5(string_agg(id || ':' || name, ',' ORDER BY id)) "
               f"FROM {TABLE}")

#: A table big enough (about 6 MB dumped) that the dump blocks on a full pipe.
BIG_TABLE = ("CREATE TABLE bulk (id integer PRIMARY KEY, filler text NOT NULL);\n"
             "INSERT INTO bulk SELECT g, md5(g::text) || repeat('x', 1000) "
             "FROM generate_series(1, 6000) g;\n")


def targetOf(server: PostgreSQLServer, **changes: Any) -> Target:
    values = {"engine": "postgresql", "host": server.host, "port": server.port,
              "database": server.database, "user": server.user, "password": server.password}
    values.update(changes)
    return Target(**values)


async def restore(server: PostgreSQLServer, content: bytes, format: str, name: str) -> str:
    """Restore a dump into a new database C{name} as the superuser; its rows digest."""
    await server.sql(f"CREATE DATABASE {name};")
    env = server.env(server.superuserPassword)
    connection = ["-h", server.host, "-p", str(server.port), "-U", server.superuser, "-d", name]
    if format == "custom":
        await checkProcess(["pg_restore", "--exit-on-error", "--no-owner", *connection],
                           env, content)
    else:
        await checkProcess(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *connection],
                           env, content)
    return (await server.sql(ROWS_DIGEST, database=name)).strip()


class PostgreSQLPipelineTests(TestCase):
    async def test_everyCompressionRestores(self) -> None:
        """
        Custom archives, in every compression, verified fully (pg_restore
        replays them), restore into a fresh database with the same rows;
        the digest is the file's; only the artifact is left.
        """
        server = await startPostgreSQL(self)
        expected = (await server.sql(ROWS_DIGEST, database=server.database)).strip()
        self.assertTrue(expected.startswith(f"{ROW_COUNT} "))
        for compression in COMPRESSIONS:
            runDir = makeRunDir(self)
            progress = ProgressLog()
            artifact = await runPipeline("postgresql", targetOf(server), runDir,
                                         progress=progress, compression=compression,
                                         verification="full", format="custom")
            self.assertTrue(artifact.name.startswith("appdb-20261129T031500Z.dump"))
            assertArtifactFiles(self, runDir, artifact)
            self.assertEqual(artifact.digest, fileDigest(artifact.path.path))
            self.assertEqual(artifact.sizeBytes, artifact.path.getsize())
            content = await decompressed(artifact.path.path, compression)
            self.assertTrue(content.startswith(b"PGDMP"))
            restored = await restore(server, content, "custom", f"restored_{compression}")
            self.assertEqual(restored, expected, compression)
            self.assertEqual(progress.stages()[0], "dump")
            self.assertEqual(progress.stages()[-2:], ["verification", "finalizing"])
            dumpBytes = progress.bytesOf("dump")
            self.assertEqual(dumpBytes, sorted(dumpBytes))
            stages = [timing.stage for timing in artifact.stageTimings]
            expectedStages = ["dump", "compression", "verification", "finalizing"]
            if compression == "none":
                expectedStages.remove("compression")
            self.assertEqual(stages, expectedStages)
            timings = {timing.stage: timing for timing in artifact.stageTimings}
            self.assertEqual(timings["dump"].bytes, len(content))
            self.assertEqual(timings["verification"].bytes, artifact.sizeBytes)
            assertHonestProgress(self, progress, artifact)

    async def test_uncountedDumpDrainedLate(self) -> None:
        """
        A dump whose exit counters say nothing (the tool is a script that
        leaves the dump to an orphaned child, whose counters it never
        collects) and a sink still draining the pipe when it exits:
        the dump's last progress is still the figure its timing keeps,
        not what the sink had read when the dump exited.
        """
        server = await startPostgreSQL(self)
        realDump = realTools().find("pg_dump")
        exited = self.mktemp()  # made once the orphaned dump has exited
        tools = realTools(fakeToolFolder(self, pg_dump=(
            f'case "$*" in *--version*) exec {realDump} "$@" ;; esac\n'
            f'( {realDump} "$@"; touch {exited} ) &\n')))

        def slowWrite(fd: int, data: Any) -> int:
            # the sink holds its first piece until the dump is over (and a
            # moment for the reactor to hear of it), then writes slowly
            deadline = time.monotonic() + 30
            while not os.path.exists(exited) and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            return os.write(fd, data)

        for compression in ("none", "zstd"):
            if os.path.exists(exited):
                os.unlink(exited)
            progress = ProgressLog()
            artifact = await runPipeline(
                "postgresql", targetOf(server), makeRunDir(self), tools=tools,
                progress=progress, compression=compression, verification="none",
                format="plain", hooks=PipelineHooks(write=slowWrite, chunkSize=512))
            dumpBytes = progress.bytesOf("dump")
            self.assertEqual(dumpBytes, sorted(dumpBytes), compression)
            self.assertGreater(artifact.sizeBytes, 512, compression)
            assertHonestProgress(self, progress, artifact)

    async def test_plainFormat(self) -> None:
        """A plain SQL dump, checked by its trailer, restores with psql."""
        server = await startPostgreSQL(self)
        expected = (await server.sql(ROWS_DIGEST, database=server.database)).strip()
        for compression, verification in (("zstd", "full"), ("none", "stream")):
            runDir = makeRunDir(self)
            artifact = await runPipeline("postgresql", targetOf(server), runDir, format="plain",
                                         compression=compression, verification=verification)
            self.assertTrue(artifact.name.startswith("appdb-20261129T031500Z.sql"))
            content = await decompressed(artifact.path.path, compression)
            self.assertIn(b"-- PostgreSQL database dump complete", content)
            self.assertEqual(await restore(server, content, "plain", f"plain_{compression}"),
                             expected)

    async def test_wrongPassword(self) -> None:
        """DUMP_FAILED quoting pg_dump, without the password; nothing left."""
        server = await startPostgreSQL(self)
        runDir = makeRunDir(self)
        password = wrongPassword(server.password)
        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server, password=password), runDir),
            BackupRemoteError)
        self.assertEqual(error.code, DUMP_FAILED)
        self.assertIn("password authentication failed", error.message)
        self.assertNotIn(password, error.message)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_missingDatabase(self) -> None:
        server = await startPostgreSQL(self)
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server, database="nosuchdb"), runDir,
                        compression="none"),
            BackupRemoteError)
        self.assertEqual(error.code, DUMP_FAILED)
        self.assertIn('database "nosuchdb" does not exist', error.message)
        self.assertEqual(os.listdir(runDir.path), [])

    async def _stuckRun(self, **options: Any) -> tuple[Any, dict[str, int], Any, Any]:
        """A run whose compressor never reads: the dump blocks on the full pipe."""
        server = await startPostgreSQL(self)
        await checkProcess(server.psqlArgs(), server.env(), BIG_TABLE)
        runDir = makeRunDir(self)
        pids: dict[str, int] = {}
        tools = realTools(fakeToolFolder(self, zstd=STUCK_ZSTD))
        progress = ProgressLog()
        running = runPipeline("postgresql", targetOf(server), runDir, tools=tools,
                              hooks=PipelineHooks(spawned=pids.__setitem__), progress=progress,
                              compression="zstd", **options)
        return running, pids, runDir, progress

    async def test_cancelMidDump(self) -> None:
        """
        Cancelling while pg_dump is blocked on the pipe kills both process
        groups, removes the partial artifact, and fails with CancelledError.
        """
        running, pids, runDir, progress = await self._stuckRun()
        await waitFor(lambda: any(done > 0 for done in progress.bytesOf("dump")))
        self.assertEqual(sorted(pids), ["compressor", "dump"])
        self.assertFalse(groupGone(pids["dump"]))
        self.assertEqual(sorted(os.listdir(runDir.path)),
                         ["appdb-20261129T031500Z.dump.zst.chunks",
                          "appdb-20261129T031500Z.dump.zst.partial"])
        running.cancel()
        await self.assertFailure(running, CancelledError)
        for role, pid in pids.items():
            self.assertTrue(groupGone(pid), role)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_timeout(self) -> None:
        """After timeoutSeconds: TIMEOUT, children killed, nothing left."""
        running, pids, runDir, _ = await self._stuckRun(timeoutSeconds=1)
        started = reactor.seconds()
        error = await self.assertFailure(running, BackupRemoteError)
        self.assertEqual(error.code, TIMEOUT)
        self.assertLess(reactor.seconds() - started, 10)
        self.assertEqual(sorted(pids), ["compressor", "dump"])
        for role, pid in pids.items():
            self.assertTrue(groupGone(pid), role)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_corruptedBeforeVerification(self) -> None:
        """A byte changed on disk after writing: the checksum read back differs."""
        server = await startPostgreSQL(self)
        runDir = makeRunDir(self)

        def damage(path: Any) -> None:
            data = bytearray(path.getContent())
            data[len(data) // 2] ^= 0x55
            path.setContent(bytes(data))

        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server), runDir,
                        hooks=PipelineHooks(beforeVerification=damage), verification="none"),
            BackupRemoteError)
        self.assertEqual(error.code, VERIFICATION_FAILED)
        self.assertIn("checksum", error.message)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_garbageCompressor(self) -> None:
        """
        A compressor that writes garbage makes an artifact whose checksum
        holds but which does not decompress: verification "stream" catches
        it and removes the artifact; "none" (checksum only) cannot.
        """
        server = await startPostgreSQL(self)
        tools = realTools(fakeToolFolder(self, zstd=(
            'case "$*" in *--version*|*-d*) exec /usr/bin/zstd "$@" ;; esac\n'
            "cat > /dev/null\nhead -c 5000 /dev/urandom\n")))
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server), runDir, tools=tools,
                        verification="stream"),
            BackupRemoteError)
        self.assertEqual(error.code, VERIFICATION_FAILED)
        self.assertIn("does not decompress (zstd)", error.message)
        self.assertEqual(os.listdir(runDir.path), [])
        unchecked = await runPipeline("postgresql", targetOf(server), makeRunDir(self),
                                      tools=tools, verification="none")
        self.assertEqual(unchecked.sizeBytes, 5000)

    async def test_truncatingCompressor(self) -> None:
        """
        A compressor that drops the end of the dump makes a valid zstd
        stream of an incomplete archive: pg_restore (custom) and the
        trailer (plain) reject it.
        """
        server = await startPostgreSQL(self)
        tools = realTools(fakeToolFolder(self, zstd=(
            'case "$*" in *--version*|*-d*) exec /usr/bin/zstd "$@" ;; esac\n'
            "{ head -c 3000; cat > /dev/null; } | /usr/bin/zstd -q -c\n")))
        for format, verification, expected in (
                ("custom", "full", "pg_restore rejected the backup"),
                ("plain", "stream", "the dump is incomplete")):
            runDir = makeRunDir(self)
            error = await self.assertFailure(
                runPipeline("postgresql", targetOf(server), runDir, tools=tools,
                            format=format, verification=verification),
                BackupRemoteError)
            self.assertEqual(error.code, VERIFICATION_FAILED)
            self.assertIn(expected, error.message)
            self.assertEqual(os.listdir(runDir.path), [])

    async def test_failingCompressor(self) -> None:
        """A compressor that fails: COMPRESSION_FAILED with its message."""
        server = await startPostgreSQL(self)
        tools = realTools(fakeToolFolder(self, zstd=(
            'case "$*" in *--version*) exec /usr/bin/zstd "$@" ;; esac\n'
            "echo 'zstd: out of cheese' >&2\nexit 3\n")))
        runDir = makeRunDir(self)
        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server), runDir, tools=tools),
            BackupRemoteError)
        self.assertEqual(error.code, COMPRESSION_FAILED)
        self.assertIn("out of cheese", error.message)
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_diskFull(self) -> None:
        """ENOSPC while writing the artifact: DISK_FULL, children killed, nothing left."""
        server = await startPostgreSQL(self)
        await checkProcess(server.psqlArgs(), server.env(), BIG_TABLE)
        runDir = makeRunDir(self)
        pids: dict[str, int] = {}
        written = [0]

        def fillingWrite(fd: int, data: Any) -> int:
            if written[0] > 200_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            count = os.write(fd, data)
            written[0] += count
            return count

        error = await self.assertFailure(
            runPipeline("postgresql", targetOf(server), runDir, compression="none",
                        hooks=PipelineHooks(spawned=pids.__setitem__, write=fillingWrite)),
            BackupRemoteError)
        self.assertEqual(error.code, DISK_FULL)
        self.assertTrue(groupGone(pids["dump"]))
        self.assertEqual(os.listdir(runDir.path), [])

    async def test_backPressure(self) -> None:
        """
        With a slow disk, the sink never holds more than a chunk, and the
        dump cannot run ahead of the disk by more than the pipe holds: the
        kernel's pipe, not the server's memory, absorbs the difference.
        """
        server = await startPostgreSQL(self)
        await checkProcess(server.psqlArgs(), server.env(), BIG_TABLE)
        chunkSize = 64 * 1024
        for compression, bound in (("none", chunkSize), ("zip", 2 * chunkSize)):
            artifact, sink, lead = await self._slowDiskRun(server, compression, chunkSize)
            self.assertGreater(sink.bytesIn, 5_000_000)
            self.assertLessEqual(sink.peakBuffered, bound, compression)
            self.assertGreater(lead, 0)
            # The pipe's capacity, plus what pg_dump writes elsewhere
            # (queries to its server): nothing like the dump's size.
            self.assertLess(lead, PIPE_SIZE + 512 * 1024, compression)
            self.assertEqual(artifact.digest, fileDigest(artifact.path.path))

    async def _slowDiskRun(self, server: PostgreSQLServer, compression: str,
                           chunkSize: int) -> tuple[Any, Any, int]:
        """A run writing 16 KiB per 2 ms; the sink, and how far the dump got ahead of it."""
        pids: dict[str, int] = {}
        sinks: list[Any] = []
        lead = [0]

        def slowWrite(fd: int, data: Any) -> int:
            time.sleep(0.002)
            return os.write(fd, data[:16 * 1024])

        def sample() -> None:
            counters = ioCounters(pids.get("dump"))
            if counters is not None and sinks:
                lead[0] = max(lead[0], counters[1] - sinks[0].bytesIn)

        sampler = LoopingCall(sample)
        sampler.start(0.02)
        try:
            artifact = await runPipeline(
                "postgresql", targetOf(server), makeRunDir(self), compression=compression,
                verification="none", hooks=PipelineHooks(
                    spawned=pids.__setitem__, sinkStarted=sinks.append, write=slowWrite,
                    chunkSize=chunkSize))
        finally:
            sampler.stop()
        return artifact, sinks[0], lead[0]
