"""
The dump stage: from the database to a compressed, hashed artifact file.

For a dump program (pg_dump, mariadb-dump, gbak) and an external
compressor::

    dump --(OS pipe)--> compressor --(OS pipe)--> sink thread --> artifact
      stderr -> reactor    stderr -> reactor        hash

Both children lead their own process group; the parent closes its copies
of the pipe ends once both are started, so each end-of-stream is seen as
soon as the writer exits. Without an external compressor the sink reads
the dump's stdout itself (C{zip} compresses there, in-process). An
in-process dump (SQLite's online backup API) writes the backup into a
scratch file in the run folder in a thread (the one intermediate file of
any engine: it is the backup itself, not an uncompressed dump), which is
then streamed through the same compression into the artifact, and removed.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from attrs import frozen

from backupremote.childprocess import Child, Exit, baseEnvironment
from backupremote.outcome import Outcome
from backupremote.protocol.errors import (
    COMPRESSION_FAILED,
    DISK_FULL,
    DUMP_FAILED,
    TEMP_NOT_WRITABLE,
    BackupRemoteError,
)
from backupremote.server.engines.base import lastLines
from backupremote.server.engines.dumps import BackupStopped, DumpPlan, InProcessDump
from backupremote.server.machinery.compressors import CompressionPlan
from backupremote.server.pipeline.artifact import PARTIAL_SUFFIX
from backupremote.server.pipeline.chunkdigests import CHUNKS_SUFFIX, ChunkDigests
from backupremote.server.pipeline.context import RunContext
from backupremote.server.pipeline.progress import IOMeter
from backupremote.server.pipeline.sink import (
    ArtifactSink,
    Stopped,
    enlargePipe,
    isDiskFull,
)
from backupremote.server.pipeline.waiting import waitForAll


@frozen
class Written:
    """The artifact as written: its digest and size, the dump's size, its chunk digests."""

    digest: str
    sizeBytes: int
    dumpBytes: int
    chunks: ChunkDigests | None = None


@frozen
class _Compression:
    """The running second half of a stage: compressor (if any), sink and its thread."""

    compressor: Child | None
    sink: ArtifactSink
    job: Outcome[str]
    meter: IOMeter

    def consumed(self) -> int:
        """Bytes of the uncompressed stream consumed so far."""
        if self.compressor is None:
            return self.sink.bytesIn
        self.meter.sample()
        return self.meter.read


def _startCompression(ctx: RunContext, compression: CompressionPlan, source: int,
                      artifactPath: str | None, memberName: str,
                      digestsPath: str) -> _Compression:
    """
    Compress the stream readable on C{source} (a pipe or a file; this takes
    it over and closes it, whatever happens) into C{artifactPath}
    (C{None}: only hash it), and the transfer chunks' digests into
    C{digestsPath}.
    """
    meter = IOMeter()
    compressor: Child | None = None
    if compression.external:
        try:
            sinkRead, sinkWrite = os.pipe()
        except BaseException:
            os.close(source)
            raise
        try:
            enlargePipe(sinkWrite)
            compressor = ctx.children.spawn(
                "compressor", compression.compressArgv(), baseEnvironment(),
                {0: source, 1: sinkWrite, 2: "r"})
        except BaseException:
            os.close(sinkRead)
            raise
        finally:
            os.close(sinkWrite)
            os.close(source)
        meter.pid = compressor.pid
        source = sinkRead
    try:
        sink = ArtifactSink(source, artifactPath, ctx.options.checksum, ctx.stop,
                            compression.transform(memberName), ctx.hooks.chunkSize,
                            ctx.hooks.write,
                            digestsPath=digestsPath)
    except BaseException:
        os.close(source)
        raise
    job = ctx.thread("backupremote-artifact-sink", sink.run)
    ctx.hooks.sinkStarted(sink)
    return _Compression(compressor, sink, job, meter)


def digestsPathOf(ctx: RunContext, partialPath: str) -> str:
    """Where the artifact's chunk digests are written (removed unless the run succeeds)."""
    name = os.path.basename(partialPath)
    return ctx.files.claim(name.removesuffix(PARTIAL_SUFFIX) + CHUNKS_SUFFIX)


def _failed(outcome: Outcome[Any]) -> bool:
    if outcome.failure is not None:
        return True
    return isinstance(outcome.value, Exit) and not outcome.value.ok


def _brokenPipe(exit: Exit) -> bool:
    return exit.signal == signal.SIGPIPE or "broken pipe" in exit.stderr.lower()


def _exitText(exit: Exit) -> str:
    if exit.signal is not None:
        return f"was killed by signal {exit.signal}"
    return f"failed with exit code {exit.exitCode}"


def judgeSink(ctx: RunContext, job: Outcome[str]) -> None:
    """Raise the error of a failed sink: disk full, zip failure, disk error."""
    failure = job.failure
    if failure is None:
        return
    error = failure.value
    if isinstance(error, Stopped):
        failure.raiseException()
    if isDiskFull(error):
        raise BackupRemoteError(DISK_FULL, "the server's temp folder is full: the backup "
                                "could not be written; its partial files were removed")
    if isinstance(error, OSError):
        raise BackupRemoteError(TEMP_NOT_WRITABLE, "the backup could not be written to the "
                                f"server's temp folder: {error.strerror or error}")
    raise BackupRemoteError(COMPRESSION_FAILED, f"compressing the backup failed: {error}")


def judgeCompression(ctx: RunContext, compression: CompressionPlan,
                     running: _Compression, dump: Outcome[Exit] | None,
                     plan: DumpPlan) -> None:
    """
    Raise the first cause of a failed stage: a full disk, then a dump that
    failed by itself, then the compressor, then a dump killed by a broken
    pipe, then any other sink error.
    """
    failure = running.job.failure
    if failure is not None and isDiskFull(failure.value):
        judgeSink(ctx, running.job)
    dumpExit = dump.value if dump is not None and dump.done else None
    if dumpExit is not None and not dumpExit.ok and not _brokenPipe(dumpExit):
        raise _dumpFailed(plan, dumpExit)
    compressor = running.compressor
    if compressor is not None and compressor.finished and not compressor.ended.value.ok:
        exit = compressor.ended.value
        raise BackupRemoteError(
            COMPRESSION_FAILED, f"{compression.compression} {_exitText(exit)}: "
            + (lastLines(exit.stderr, 3) or "no message"))
    if dumpExit is not None and not dumpExit.ok:
        raise _dumpFailed(plan, dumpExit)
    judgeSink(ctx, running.job)


def _dumpFailed(plan: DumpPlan, exit: Exit) -> BackupRemoteError:
    message = plan.messageOf(exit.stderr) or f"{plan.toolName} {_exitText(exit)}"
    return BackupRemoteError(DUMP_FAILED, message)


async def dumpStage(ctx: RunContext, plan: DumpPlan, compression: CompressionPlan,
                    partialPath: str, memberName: str) -> Written:
    """Dump, compress, hash and write the artifact at C{partialPath}."""
    if plan.inProcess is not None:
        return await _inProcessDump(ctx, plan, plan.inProcess, compression, partialPath,
                                    memberName)
    return await _processDump(ctx, plan, compression, partialPath, memberName)


async def _processDump(ctx: RunContext, plan: DumpPlan, compression: CompressionPlan,
                       partialPath: str, memberName: str) -> Written:
    assert plan.argv is not None
    ctx.clock.start("dump")
    dumpRead, dumpWrite = os.pipe()
    try:
        enlargePipe(dumpWrite)
        dump = ctx.children.spawn("dump", plan.argv, plan.env, {0: "w", 1: dumpWrite, 2: "r"})
    except BaseException:
        os.close(dumpRead)
        raise
    finally:
        os.close(dumpWrite)
    running = _startCompression(ctx, compression, dumpRead, partialPath, memberName,
                                digestsPathOf(ctx, partialPath))
    dumpMeter = IOMeter()
    dumpMeter.pid = dump.pid

    def dumped() -> int:
        if dump.exitIO is not None:
            # Counted as it exited: all it wrote, less what went to its stderr.
            return max(0, dump.exitIO[1] - dump.stderrBytes)
        if running.compressor is None:
            return running.sink.bytesIn
        dumpMeter.sample()
        if not dump.finished:
            return dumpMeter.written
        # Its counters were gone at exit: the dump's last writes may have
        # come after its last sample; the compressor's reads also count its
        # start-up (a few KiB, until verification amends the figure with the
        # exact decompressed size).
        return max(dumpMeter.written, running.consumed())

    ctx.ticker.follow("dump", lambda: (dumped(), ctx.sizeEstimate))

    def dumpEnded(exit: Exit) -> None:
        if ctx.stop() or not exit.ok:
            return
        if dump.exitIO is None:
            # Its size is known only once the pipe is drained: the stage
            # ends with the pipeline, below, and is followed until then.
            return
        total = dumped()
        ctx.clock.end("dump", total)
        if not compression.compresses:
            return
        ctx.clock.start("compression")
        if not running.job.done:
            # Reported only if the compressor is still draining at the next tick.
            ctx.ticker.follow("compression", lambda: (running.consumed(), total),
                              announce=False)

    dump.ended.when().addCallback(dumpEnded)
    parts = [dump.ended, running.job]
    if running.compressor is not None:
        parts.append(running.compressor.ended)
    await waitForAll(ctx.reactor, parts, _failed)
    judgeCompression(ctx, compression, running, dump.ended, plan)
    total = dumped()
    ctx.clock.end("dump", total)
    ctx.clock.amend("dump", total)
    if compression.compresses:
        # compression counts what it compressed: the whole dump
        ctx.clock.start("compression")
        ctx.clock.end("compression", total)
    return Written(running.job.value, running.sink.bytesOut, total, running.sink.chunkDigests)


class _BackupProgress:
    """An in-process dump's progress, written by its thread, read by the reactor."""

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total


async def _inProcessDump(ctx: RunContext, plan: DumpPlan, dump: InProcessDump,
                         compression: CompressionPlan, partialPath: str,
                         memberName: str) -> Written:
    ctx.clock.start("dump")
    uncompressed = not compression.compresses
    # Without compression the backup file is the artifact: no copy.
    backupPath = partialPath if uncompressed else ctx.files.claim(
        os.path.basename(partialPath) + ".backup")
    state = _BackupProgress()
    ctx.ticker.follow("dump", lambda: (state.done, state.total or ctx.sizeEstimate))
    job = ctx.thread(dump.threadName, dump.run, backupPath, ctx.stop, state)
    try:
        size = await job.when()
    except BackupStopped:
        raise Stopped() from None
    except Exception as error:
        meaning = dump.failure(error)
        if meaning is None:
            raise
        raise meaning from None
    source = os.open(backupPath, os.O_RDONLY | os.O_CLOEXEC)
    if uncompressed:
        # The backup is done; what remains is hashing it.
        running = _startCompression(ctx, compression, source, None, memberName,
                                    digestsPathOf(ctx, partialPath))
        ctx.ticker.follow("dump", lambda: (size, size))
    else:
        ctx.clock.end("dump", size)
        ctx.clock.start("compression")
        running = _startCompression(ctx, compression, source, partialPath, memberName,
                                    digestsPathOf(ctx, partialPath))
        ctx.ticker.follow("compression", lambda: (min(running.consumed(), size), size))
    parts = [running.job]
    if running.compressor is not None:
        parts.append(running.compressor.ended)
    await waitForAll(ctx.reactor, parts, _failed)
    judgeCompression(ctx, compression, running, None, plan)
    if uncompressed:
        ctx.clock.end("dump", size)
        return Written(running.job.value, size, size, running.sink.chunkDigests)
    ctx.files.remove(backupPath)
    ctx.clock.end("compression", size)
    return Written(running.job.value, running.sink.bytesOut, size, running.sink.chunkDigests)
