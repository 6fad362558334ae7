"""
The pipeline's parts on their own: names, command lines, the in-process
zip, the sink and its reader, the stream inspector, outcomes and waiting.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
import zipfile

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.childprocess import exitCounters, ioCounters
from backupremote.outcome import Outcome
from backupremote.protocol.errors import (
    COMPRESSION_UNAVAILABLE,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.options import BackupOptions
from backupremote.server import pipeline
from backupremote.server.engines import defaultEngines, firebird, mariadb, postgresql
from backupremote.server.engines.base import Target
from backupremote.server.engines.dumps import TAIL_BYTES, chooseFormat
from backupremote.server.machinery.compressors import (
    COMPRESSORS,
    CompressionPlan,
    ZipTransform,
    planCompression,
    zipMember,
)
from backupremote.server.machinery.toolfinder import Tool, ToolFinder
from backupremote.server.pipeline.artifact import artifactName
from backupremote.server.pipeline.children import PIPELINE_NICENESS, Children
from backupremote.server.pipeline.context import RunFiles, StageClock
from backupremote.server.pipeline.inspection import ArtifactReader, StreamInspector
from backupremote.server.pipeline.progress import ProgressTicker
from backupremote.server.pipeline.sink import ArtifactSink, ChunkReader, Stopped
from backupremote.server.pipeline.threads import StopFlag
from backupremote.server.pipeline.waiting import anyOf, waitForAll
from tests.server.pipeline.helpers import groupGone, makeRunDir, realTools, waitFor

SECRET = "s3cret 'pass' \"word\""


class ExportTests(SynchronousTestCase):
    def test_exports(self) -> None:
        self.assertEqual(sorted(pipeline.__all__),
                         ["Artifact", "PipelineHooks", "produceArtifact"])


class NameTests(SynchronousTestCase):
    def test_names(self) -> None:
        self.assertEqual(artifactName("shop-20261129T031500Z", ".dump", ".zst"),
                         "shop-20261129T031500Z.dump.zst")
        self.assertEqual(artifactName("a", ".sql", ""), "a.sql")

    def test_badNames(self) -> None:
        for bad in ("", "../x", "a/b", ".hidden", "a..b", "a\0b", "x" * 300):
            self.assertRaises(ValueError, artifactName, bad, ".sql", "")

    def test_formats(self) -> None:
        formats = defaultEngines()["postgresql"].formats
        self.assertEqual(chooseFormat("postgresql", formats, BackupOptions()), "custom")
        self.assertEqual(chooseFormat("postgresql", formats, BackupOptions(format="plain")),
                         "plain")
        error = self.assertRaises(BackupRemoteError, chooseFormat, "mariadb",
                                  defaultEngines()["mariadb"].formats,
                                  BackupOptions(format="custom"))
        self.assertEqual(error.code, VALIDATION_FAILED)


class CommandLineTests(SynchronousTestCase):
    def plan(self, name: str, level: int = 3, threads: int = 0) -> CompressionPlan:
        compression = {"pigz": "gzip", "gzip": "gzip", "zstd": "zstd", "xz": "xz"}[name]
        return CompressionPlan(COMPRESSORS[compression], Tool(name, f"/usr/bin/{name}", "1"),
                               level, threads)

    def test_compressors(self) -> None:
        self.assertEqual(self.plan("zstd", 3, 0).compressArgv(),
                         ["/usr/bin/zstd", "-q", "-c", "-3", "-T0"])
        self.assertEqual(self.plan("zstd", 19, 2).compressArgv(),
                         ["/usr/bin/zstd", "-q", "-c", "-19", "-T2"])
        self.assertEqual(self.plan("pigz", 6, 4).compressArgv(),
                         ["/usr/bin/pigz", "-c", "-6", "-p", "4"])
        self.assertEqual(self.plan("gzip", 9).compressArgv(), ["/usr/bin/gzip", "-c", "-9"])
        self.assertEqual(self.plan("xz", 6, 0).compressArgv(),
                         ["/usr/bin/xz", "-c", "-6", "-T0"])
        self.assertEqual(self.plan("zstd").decompressArgv(),
                         ["/usr/bin/zstd", "-q", "-d", "-c"])

    def test_postgresql(self) -> None:
        target = Target(engine="postgresql", host="db", port=5433, database="shop",
                        user="u", password=SECRET)
        argv = postgresql.dumpArgv("/x/pg_dump", target, "custom")
        self.assertEqual(argv[:4], ["/x/pg_dump", "--no-password", "-Fc", "-Z0"])
        self.assertIn("dbname='shop'", argv)
        self.assertNotIn(SECRET, " ".join(argv))
        self.assertIn("-Fp", postgresql.dumpArgv("/x/pg_dump", target, "plain"))
        self.assertRaises(ValueError, postgresql.dumpArgv, "/x/pg_dump", target, "tar")
        self.assertEqual(postgresql.restoreCheckArgv("/x/pg_restore", full=False),
                         ["/x/pg_restore", "-l"])
        self.assertEqual(postgresql.restoreCheckArgv("/x/pg_restore", full=True),
                         ["/x/pg_restore", "-f", "/dev/null"])

    def test_mariadb(self) -> None:
        target = Target(engine="mariadb", host="db", database="--all-databases", user="u",
                        password=SECRET)
        argv = mariadb.dumpArgv("/x/mariadb-dump", "/p/client.cnf", target)
        self.assertEqual(argv[:2], ["/x/mariadb-dump", "--defaults-extra-file=/p/client.cnf"])
        self.assertEqual(argv[-2:], ["--", "--all-databases"])
        for option in ("--single-transaction", "--quick", "--routines", "--events",
                       "--triggers", "--hex-blob", "--protocol=TCP"):
            self.assertIn(option, argv)
        self.assertNotIn(SECRET, " ".join(argv))

    def test_firebird(self) -> None:
        target = Target(engine="firebird", host="fb", database="/data/app.fdb", user="APP",
                        password=SECRET, options={"role": "READER"})
        argv = firebird.dumpArgv("/x/gbak", target)
        self.assertEqual(argv, ["/x/gbak", "-b", "-g", "-ro", "READER", "fb/3050:/data/app.fdb",
                                "stdout"])
        self.assertNotIn("-r", argv)
        self.assertEqual(firebird.restoreCheckArgv("/x/gbak", "/run/x.fdb"),
                         ["/x/gbak", "-c", "stdin", "/run/x.fdb"])

    def test_gbakHeader(self) -> None:
        self.assertTrue(firebird.looksLikeGbakBackup(b"\x00\x02\x04\x0a\x00\x00\x00\x04"))
        self.assertFalse(firebird.looksLikeGbakBackup(b"\x00\x02\x04\x00\x00\x00\x00"))
        self.assertFalse(firebird.looksLikeGbakBackup(b"PGDMP"))


class PlanCompressionTests(TestCase):
    async def test_levels(self) -> None:
        tools = realTools()
        plan = await planCompression(tools, BackupOptions(compression="zstd"))
        self.assertEqual((plan.level, plan.extension), (3, ".zst"))
        plan = await planCompression(tools, BackupOptions(compression="zip", level=9))
        self.assertEqual((plan.level, plan.external), (9, False))
        for compression, level in (("gzip", 12), ("zstd", 20), ("xz", -1)):
            error = await self.assertFailure(Deferred.fromCoroutine(
                planCompression(tools, BackupOptions(compression=compression, level=level))),
                BackupRemoteError)
            self.assertEqual(error.code, VALIDATION_FAILED, compression)

    async def test_missingProgram(self) -> None:
        error = await self.assertFailure(Deferred.fromCoroutine(
            planCompression(ToolFinder(reactor, ()), BackupOptions(compression="xz"))),
            BackupRemoteError)
        self.assertEqual(error.code, COMPRESSION_UNAVAILABLE)


class ZipTests(SynchronousTestCase):
    def test_streamedArchive(self) -> None:
        """The streamed archive (data descriptor, zip64) reads back with its CRC checked."""
        out = io.BytesIO()
        transform = ZipTransform("x.sql", 6, out.write)
        payload = os.urandom(300_000) + b"-- Dump completed\n" * 10_000
        for start in range(0, len(payload), 65536):
            transform.feed(payload[start:start + 65536])
        transform.finish()
        path = self.mktemp()
        with open(path, "wb") as stream:
            stream.write(out.getvalue())
        archive, name = zipMember(path)
        with archive:
            self.assertEqual(name, "x.sql")
            self.assertEqual(archive.read(name), payload)
            self.assertIsNone(archive.testzip())

    def test_notOneMember(self) -> None:
        path = self.mktemp()
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a", b"1")
            archive.writestr("b", b"2")
        self.assertRaises(zipfile.BadZipFile, zipMember, path)


class SinkTests(SynchronousTestCase):
    def test_copiesAndHashes(self) -> None:
        source, sourceWrite = os.pipe()
        payload = os.urandom(3 * 65536 + 17)
        threading.Thread(target=lambda: (os.write(sourceWrite, payload),
                                         os.close(sourceWrite))).start()
        path = self.mktemp()
        sink = ArtifactSink(source, path, "blake2b", StopFlag(), chunkSize=65536)
        digest = sink.run()
        self.assertEqual(digest, hashlib.blake2b(payload).hexdigest())
        with open(path, "rb") as stream:
            self.assertEqual(stream.read(), payload)
        self.assertEqual((sink.bytesIn, sink.bytesOut), (len(payload), len(payload)))
        self.assertLessEqual(sink.peakBuffered, 65536)
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)

    def test_stopWhileWaiting(self) -> None:
        """A reader waiting on a silent pipe gives up once the stop flag is set."""
        source, sourceWrite = os.pipe()
        self.addCleanup(os.close, sourceWrite)
        self.addCleanup(os.close, source)
        stop = StopFlag()
        threading.Timer(0.1, stop.set).start()
        self.assertRaises(Stopped, ChunkReader(source, stop).read)


class InspectorTests(SynchronousTestCase):
    def test_headTailAndForward(self) -> None:
        forwardRead, forwardWrite = os.pipe()
        os.close(forwardRead)  # the checker left early (pg_restore -l)
        inspector = StreamInspector(forwardWrite)
        payload = b"PGDMP" + b"x" * 100_000 + b"THE END"
        for start in range(0, len(payload), 7000):
            inspector.feed(payload[start:start + 7000])
        inspector.finish()
        self.assertEqual(inspector.head[:5], b"PGDMP")
        self.assertTrue(inspector.tail.endswith(b"THE END"))
        self.assertEqual(len(inspector.tail), TAIL_BYTES)
        self.assertEqual(inspector.byteCount, len(payload))
        self.assertTrue(inspector.forwardBroken)

    def test_readerHashes(self) -> None:
        path = self.mktemp()
        payload = os.urandom(100_000)
        with open(path, "wb") as stream:
            stream.write(payload)
        inspector = StreamInspector()
        reader = ArtifactReader(path, "sha256", StopFlag(), chunkSize=4096)
        self.assertEqual(reader.run(inspector), hashlib.sha256(payload).hexdigest())
        self.assertEqual((reader.bytesRead, inspector.byteCount), (100_000, 100_000))


class OutcomeTests(SynchronousTestCase):
    def test_eachWaitIsItsOwn(self) -> None:
        """Cancelling one wait leaves the outcome and the other waits alone."""
        outcome: Outcome[int] = Outcome()
        first, second = outcome.when(), outcome.when()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        outcome.succeed(7)
        self.assertEqual(self.successResultOf(second), 7)
        self.assertEqual(self.successResultOf(outcome.when()), 7)

    def test_failure(self) -> None:
        outcome: Outcome[int] = Outcome()
        outcome.fail(Failure(ValueError("no")))
        self.assertIsInstance(outcome.failure.value, ValueError)
        self.failureResultOf(outcome.when(), ValueError)
        self.assertRaises(ValueError, lambda: outcome.value)

    def test_anyOf(self) -> None:
        clock = Clock()
        a: Outcome[int] = Outcome()
        b: Outcome[int] = Outcome()
        woken = anyOf(clock, [a, b], timeout=5)
        self.assertNoResult(woken)
        b.succeed(1)
        self.assertIsNone(self.successResultOf(woken))
        self.assertEqual(clock.getDelayedCalls(), [])
        late = anyOf(clock, [a], timeout=5)
        clock.advance(5)
        self.assertIsNone(self.successResultOf(late))

    def test_waitForAllGivesUpAfterGrace(self) -> None:
        """Once a part failed, the others get a grace period, not forever."""
        clock = Clock()
        failing: Outcome[int] = Outcome()
        stuck: Outcome[int] = Outcome()
        waiting = Deferred.fromCoroutine(waitForAll(
            clock, [failing, stuck], lambda outcome: outcome.failure is not None, grace=2))
        failing.fail(Failure(RuntimeError("broken")))
        self.assertNoResult(waiting)
        clock.advance(2)
        self.assertIsNone(self.successResultOf(waiting))


class ProgressTests(SynchronousTestCase):
    def test_ticks(self) -> None:
        clock = Clock()
        calls: list[tuple[str, int, int | None]] = []
        ticker = ProgressTicker(clock, lambda *call: calls.append(call))
        count = [0]

        def measure() -> tuple[int, int | None]:
            count[0] += 10
            return count[0], 100

        ticker.follow("dump", measure)
        clock.advance(0.5)
        ticker.follow("compression", lambda: (1, 2), announce=False)
        self.assertEqual(calls, [("dump", 10, 100), ("dump", 20, 100)])
        clock.advance(0.5)
        self.assertEqual(calls[-1], ("compression", 1, 2))
        ticker.stop()
        clock.advance(5)
        self.assertEqual(len(calls), 3)

    def test_ioCounters(self) -> None:
        counters = ioCounters(os.getpid())
        self.assertIsNotNone(counters)
        self.assertIsNone(ioCounters(None))
        self.assertIsNone(ioCounters(2 ** 22 + 12345))

    def test_exitCountersOfNothingWrittenAreUnknown(self) -> None:
        """
        Counters read as a child exits that say it wrote nothing are not
        trusted (an exiting process's accounting can read as zeros), so the
        dump's size falls back to what was measured on the way.
        """
        self.assertIsNone(exitCounters((0, 0)))
        self.assertIsNone(exitCounters((4096, 0)))
        self.assertIsNone(exitCounters(None))
        self.assertEqual(exitCounters((4096, 6745)), (4096, 6745))


class FilesTests(SynchronousTestCase):
    def test_claimAndRemove(self) -> None:
        runDir = makeRunDir(self)
        files = RunFiles(runDir)
        kept = files.claim("a.dump")
        scratch = files.claim("a.dump.backup")
        for path in (kept, scratch, scratch + "-journal"):
            with open(path, "w"):
                pass
        files.release(kept)
        files.removeAll()
        self.assertEqual(os.listdir(runDir.path), ["a.dump"])
        self.assertRaises(ValueError, files.claim, "../escape")

    def test_clock(self) -> None:
        clock = Clock()
        clock.advance(1000)
        stages = StageClock(clock.seconds)
        stages.start("dump")
        clock.advance(2)
        stages.end("dump", 10)
        stages.amend("dump", 12)
        (timing,) = stages.timings
        self.assertEqual((timing.stage, timing.bytes), ("dump", 12))
        self.assertEqual((timing.endedAt - timing.startedAt).total_seconds(), 2)


class ChildrenTests(TestCase):
    async def test_killRightAfterSpawn(self) -> None:
        """
        A child killed at once, before it made its process group,
        still dies (the group kill alone would miss it).
        """
        children = Children(reactor)
        for _ in range(5):
            child = children.spawn("dump", ["/bin/sleep", "600"], {}, {0: "w", 1: "r", 2: "r"})
            children.killAll()
            exit = await child.ended.when()
            self.assertEqual(exit.signal, 9)
            self.assertTrue(groupGone(child.pid))

    async def test_groupLeaderInTheServersSession(self) -> None:
        """
        A child leads its own process group, with whatever it starts, and
        stays in the server's session (a session of its own would put it in
        another scheduler autogroup); killing the group kills the grandchild.
        """
        children = Children(reactor)
        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        try:
            child = children.spawn(
                "dump", ["/bin/sh", "-c", "sleep 600 & echo $$ $!; wait"], {},
                {0: "w", 1: writeEnd, 2: "r"})
        finally:
            os.close(writeEnd)
        self.addCleanup(children.killAll)
        line = await deferToThread(os.read, readEnd, 100)
        shell, grandchild = (int(x) for x in line.split())
        self.assertEqual(shell, child.pid)
        self.assertEqual(os.getpgid(child.pid), child.pid)
        self.assertEqual(os.getpgid(grandchild), child.pid)
        self.assertEqual(os.getsid(child.pid), os.getsid(0))
        children.killAll()
        await child.ended.when()
        # the orphaned grandchild is reaped by init, in its own time
        await waitFor(lambda: groupGone(child.pid), timeout=10)

    async def test_childrenRunNicerThanTheServer(self) -> None:
        """
        The dump and the compressor run PIPELINE_NICENESS steps nicer than the
        server, threads included, so its reactor gets a core first.
        """
        children = Children(reactor)
        readEnd, writeEnd = os.pipe()
        self.addCleanup(os.close, readEnd)
        try:
            child = children.spawn(
                "dump", [sys.executable, "-c",
                         "import os, threading; r = []; t = threading.Thread("
                         "target=lambda: r.append(os.getpriority(os.PRIO_PROCESS, 0))); "
                         "t.start(); t.join(); print(os.nice(0), r[0])"], {},
                {0: "w", 1: writeEnd, 2: "r"})
        finally:
            os.close(writeEnd)
        exit = await child.ended.when()
        self.assertTrue(exit.ok, exit.stderr)
        line = await deferToThread(os.read, readEnd, 100)
        ours = os.nice(0)
        expected = min(19, ours + PIPELINE_NICENESS)
        self.assertEqual([int(x) for x in line.split()], [expected, expected])
        self.assertGreater(PIPELINE_NICENESS, 0)

    async def test_exitAndStderr(self) -> None:
        children = Children(reactor)
        child = children.spawn("dump", ["/bin/sh", "-c", "echo oops >&2; exit 3"], {},
                               {0: "w", 1: "r", 2: "r"})
        exit = await child.ended.when()
        self.assertEqual((exit.role, exit.exitCode, exit.ok), ("dump", 3, False))
        self.assertEqual(exit.stderr.strip(), "oops")
        self.assertEqual(children.running, [])
        self.assertRaises(ValueError, children.spawn, "x", ["sleep"], {}, {})


class PlanTests(TestCase):
    async def test_postgresql(self) -> None:
        """pg_dump and the pg_restore next to it; the password only in the environment."""
        target = Target(engine="postgresql", host="127.0.0.1", port=5432, database="shop",
                        user="u", password=SECRET)
        plan = await defaultEngines()["postgresql"].dumpPlan(target, "custom", realTools(), None)
        self.assertEqual(os.path.basename(plan.argv[0]), "pg_dump")
        self.assertEqual(os.path.dirname(plan.check.streamArgv[0]),
                         os.path.dirname(plan.argv[0]))
        self.assertNotIn(SECRET, " ".join(plan.argv))
        self.assertEqual(plan.env["PGPASSWORD"], SECRET)
        self.assertNotIn("PGPASSWORD", plan.check.env)
        self.assertEqual((plan.format, plan.extension), ("custom", ".dump"))

    async def test_mariadbOptionFileLivesWithTheDump(self) -> None:
        target = Target(engine="mariadb", host="127.0.0.1", database="shop", user="u",
                        password=SECRET)
        plan = await defaultEngines()["mariadb"].dumpPlan(target, "sql", realTools(), None)
        optionsPath = plan.argv[1].split("=", 1)[1]
        with plan.resources:
            self.assertEqual(os.stat(optionsPath).st_mode & 0o777, 0o600)
            self.assertIn(b"password=", FilePath(optionsPath).getContent())
        self.assertFalse(os.path.exists(optionsPath))
        self.assertNotIn(SECRET, " ".join(plan.argv))
        self.assertNotIn(SECRET, " ".join(plan.env.values()))

    async def test_firebirdServer(self) -> None:
        target = Target(engine="firebird", host="fb", database="app", user="APP",
                        password=SECRET)
        plan = await defaultEngines()["firebird"].dumpPlan(target, "fbk", realTools(), None)
        self.assertEqual(plan.env["ISC_PASSWORD"], SECRET)
        self.assertNotIn(SECRET, " ".join(plan.argv))
        self.assertNotIn("ISC_PASSWORD", plan.check.env)
        self.assertEqual(plan.check.fullArgv("/run/x.fdb")[-2:], ["stdin", "/run/x.fdb"])
