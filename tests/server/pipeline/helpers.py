"""
What the pipeline tests share: running a pipeline, reading artifacts back
independently of the pipeline's own code, fake tools, process checks.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath

from backupremote.childprocess import runProcess
from backupremote.protocol.options import BackupOptions
from backupremote.server.engines import defaultEngines
from backupremote.server.engines.base import Target
from backupremote.server.machinery.toolfinder import ToolFinder, defaultToolPath
from backupremote.server.pipeline import Artifact, PipelineHooks, produceArtifact
from backupremote.server.pipeline.chunkdigests import CHUNKS_SUFFIX
from backupremote.server.transfers.manifest import hashChunks
from tests.databases.servers import _baseEnv, which

COMPRESSIONS = ("none", "gzip", "zstd", "xz", "zip")


class ProgressLog:
    """Every progress call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int | None]] = []

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.calls.append((stage, done, total))

    def stages(self) -> list[str]:
        seen: list[str] = []
        for stage, _, _ in self.calls:
            if not seen or seen[-1] != stage:
                seen.append(stage)
        return seen

    def bytesOf(self, stage: str) -> list[int]:
        return [done for name, done, _ in self.calls if name == stage]


def makeRunDir(testCase: Any) -> FilePath:
    """A fresh, empty run folder (0700), removed after the test."""
    path = FilePath(tempfile.mkdtemp(prefix="br-run-"))
    testCase.addCleanup(_removeTree, path)
    return path


def _removeTree(path: FilePath) -> None:
    if path.exists():
        path.remove()


def realTools(*extraFolders: str) -> ToolFinder:
    """The server's tool finder on this machine, C{extraFolders} searched first."""
    return ToolFinder(reactor, (*extraFolders, *defaultToolPath()))


def runPipeline(engineName: str, target: Target, runDir: FilePath,
                tools: ToolFinder | None = None, hooks: PipelineHooks | None = None,
                progress: ProgressLog | None = None, baseName: str = "appdb-20261129T031500Z",
                sizeEstimate: int | None = None, **options: Any) -> Deferred[Artifact]:
    """The pipeline's Deferred (cancellable) for one run with C{options}."""
    return Deferred.fromCoroutine(produceArtifact(
        reactor, defaultEngines()[engineName], target, BackupOptions(**options), tools or realTools(),
        runDir, baseName, progress or ProgressLog(), sizeEstimate, hooks=hooks))


def fileDigest(path: str, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def decompressed(path: str, compression: str) -> bytes:
    """The artifact's content, decompressed by the standard tools (not the pipeline's code)."""
    if compression == "none":
        return FilePath(path).getContent()
    if compression == "zip":
        with zipfile.ZipFile(path) as archive:
            (name,) = archive.namelist()
            return archive.read(name)
    program = {"gzip": "gzip", "zstd": "zstd", "xz": "xz"}[compression]
    return await _checkBytes([program, "-d", "-c"], FilePath(path).getContent())


async def _checkBytes(argv: list[str], stdin: bytes) -> bytes:
    """Run a program on C{stdin}; its stdout as bytes (it must succeed)."""
    done = await runProcess(reactor, [which(argv[0]), *argv[1:]], _baseEnv(), timeout=60,
                            stdin=stdin)
    if not done.ok:
        raise AssertionError(f"{argv} failed: {done.stderr}")
    return done.stdout


def writeTool(folder: str, name: str, script: str) -> str:
    """An executable shell script C{folder/name}."""
    path = os.path.join(folder, name)
    with open(path, "w") as stream:
        stream.write("#!/bin/sh\n" + script)
    os.chmod(path, 0o755)
    return path


def fakeToolFolder(testCase: Any, **scripts: str) -> str:
    """A folder of fake tools (name -> script body), removed after the test."""
    folder = tempfile.mkdtemp(prefix="br-tools-")
    testCase.addCleanup(_removeTree, FilePath(folder))
    for name, script in scripts.items():
        writeTool(folder, name, script)
    return folder


#: A zstd that answers --version and decompresses like the real one, but
#: when asked to compress never reads its input.
STUCK_ZSTD = """\
case "$*" in
  *--version*|*-d*) exec /usr/bin/zstd "$@" ;;
esac
exec sleep 600
"""


def groupGone(pid: int) -> bool:
    """Whether no process is left in the process group C{pid} led."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


async def waitFor(condition: Any, timeout: float = 30.0, step: float = 0.05) -> None:
    """Wait until C{condition()} is true (fail after C{timeout} seconds)."""
    deadline = reactor.seconds() + timeout
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await sleep(step)



def assertHonestProgress(testCase: Any, progress: ProgressLog, artifact: Artifact,
                         dumpSlack: int = 0) -> None:
    """
    The last progress figure of every stage is the one its timing keeps:
    what a person saw last of a stage is what the final status says.

    C{dumpSlack}: for a dump tool that also writes to files of its own
    (gbak, embedded, writes pages of the database), its I/O counters
    overcount the dump by up to this much; verification corrects the
    status.
    """
    for timing in artifact.stageTimings:
        reported = progress.bytesOf(timing.stage)
        testCase.assertTrue(reported, f"no progress of {timing.stage}")
        if dumpSlack and timing.stage in ("dump", "compression"):
            testCase.assertTrue(0 <= reported[-1] - timing.bytes <= dumpSlack,
                                (timing.stage, reported[-1], timing.bytes))
        else:
            testCase.assertEqual(reported[-1], timing.bytes, timing.stage)
    timings = {timing.stage: timing.bytes for timing in artifact.stageTimings}
    testCase.assertEqual(timings["verification"], artifact.sizeBytes)
    if "compression" in timings:
        # compression counts what it compressed: the dump
        testCase.assertEqual(timings["compression"], timings["dump"])


def assertArtifactFiles(testCase: Any, runDir: FilePath, artifact: Any) -> None:
    """
    The run folder holds the artifact and its chunk digests only, and those
    digests (made while writing) are what hashing the file gives.
    """
    testCase.assertEqual(sorted(os.listdir(runDir.path)),
                         sorted([artifact.name, artifact.name + CHUNKS_SUFFIX]))
    size, sha256, digests = hashChunks(artifact.path.path)
    testCase.assertEqual((artifact.chunks.sizeBytes, artifact.chunks.sha256), (size, sha256))
    testCase.assertEqual(artifact.chunks.path.getContent(), digests)
