"""
One run's pipeline, start to finish: L{produceArtifact}.

Stages: dump (with compression and hashing as it streams), verification,
finalizing (the verified file takes its final name). Whatever ends the run
early (a failure, the caller cancelling the Deferred, the run's timeout),
every child's process group is killed, every thread is stopped and waited
for, and every file the run made is removed before the error is raised
again: nothing is left behind.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.filepath import FilePath

from backupremote.protocol.errors import TIMEOUT, VALIDATION_FAILED, BackupRemoteError
from backupremote.protocol.options import CHECKSUMS, VERIFICATIONS, BackupOptions
from backupremote.reactors import IWorkReactor
from backupremote.server.engines.base import IEngine, Target
from backupremote.server.engines.dumps import DumpPlan, chooseFormat
from backupremote.server.machinery.compressors import planCompression
from backupremote.server.machinery.toolfinder import ToolFinder
from backupremote.server.pipeline.artifact import PARTIAL_SUFFIX, Artifact, artifactName
from backupremote.server.pipeline.context import RunContext, RunFiles
from backupremote.server.pipeline.dumping import dumpStage
from backupremote.server.pipeline.hooks import PipelineHooks
from backupremote.server.pipeline.progress import ProgressCallback, ProgressTicker
from backupremote.server.pipeline.verification import verifyStage
from backupremote.server.pipeline.waiting import waitQuietly


async def produceArtifact(reactor: IWorkReactor, engine: IEngine, target: Target,
                          options: BackupOptions, tools: ToolFinder, runDir: FilePath,
                          baseName: str, progress: ProgressCallback,
                          sizeEstimate: int | None, *, hooks: PipelineHooks | None = None,
                          serverVersion: str | None = None) -> Artifact:
    """
    Dump C{target} with C{engine}'s tool, compress, hash and verify it as
    C{options} say, into a file of C{runDir} named after C{baseName}.

    C{progress(stage, bytesDone, totalEstimate)} is called about twice a
    second. C{serverVersion} (from a connection test) lets the engine pick
    the matching dump tool; without it the newest installed is used.

    Raises L{BackupRemoteError} (C{DUMP_FAILED}, C{COMPRESSION_FAILED},
    C{VERIFICATION_FAILED}, C{DISK_FULL}, C{TIMEOUT}, C{TOOL_MISSING}...)
    or, when the Deferred running it is cancelled, C{CancelledError}; in
    every such case nothing of the run is left running or on disk.
    """
    _validate(options)
    ctx = RunContext(reactor=reactor, target=target, options=options,
                     files=RunFiles(runDir), ticker=ProgressTicker(reactor, progress),
                     hooks=hooks or PipelineHooks(), sizeEstimate=sizeEstimate)
    work = Deferred.fromCoroutine(_stages(ctx, engine, tools, baseName, serverVersion))
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        work.cancel()

    timer = reactor.callLater(options.timeoutSeconds, expire)
    try:
        return await work
    except CancelledError:
        if expired:
            raise BackupRemoteError(
                TIMEOUT, f"the backup did not finish within {options.timeoutSeconds} seconds "
                "(timeoutSeconds); it was stopped and its partial files were removed"
            ) from None
        raise
    finally:
        if timer.active():
            timer.cancel()


def _validate(options: BackupOptions) -> None:
    problems = {}
    if options.checksum not in CHECKSUMS:
        problems["checksum"] = "must be one of " + ", ".join(CHECKSUMS)
    if options.verification not in VERIFICATIONS:
        problems["verification"] = "must be one of " + ", ".join(VERIFICATIONS)
    if options.timeoutSeconds <= 0:
        problems["timeoutSeconds"] = "must be a positive number of seconds"
    if problems:
        raise BackupRemoteError(VALIDATION_FAILED, "invalid backup options: "
                                + "; ".join(f"{k} {v}" for k, v in problems.items()),
                                details={"fields": problems})


async def _stages(ctx: RunContext, engine: IEngine, tools: ToolFinder, baseName: str,
                  serverVersion: str | None) -> Artifact:
    try:
        compression = await planCompression(tools, ctx.options)
        format = chooseFormat(engine.name, engine.formats, ctx.options)
        # mypy reads an Interface's methods as a class's (the first argument as self)
        makePlan: Callable[..., Awaitable[DumpPlan]] = engine.dumpPlan
        plan = await makePlan(ctx.target, format, tools, serverVersion)
        with plan.resources:
            name = artifactName(baseName, plan.extension, compression.extension)
            partial = ctx.files.claim(name + PARTIAL_SUFFIX)
            written = await dumpStage(ctx, plan, compression, partial, baseName + plan.extension)
        pending = ctx.hooks.beforeVerification(FilePath(partial))
        if inspect.isawaitable(pending):
            await pending
        verified = await verifyStage(ctx, plan, compression, partial, written)
        if verified.decompressedBytes is not None:
            # Counted exactly on the way back, where the dump's own size
            # could only be sampled from the kernel's counters.
            ctx.clock.amend("dump", verified.decompressedBytes)
            ctx.clock.amend("compression", verified.decompressedBytes)
        ctx.clock.start("finalizing")
        ctx.ticker.follow("finalizing", lambda: (written.sizeBytes, written.sizeBytes))
        final = ctx.files.claim(name)
        os.rename(partial, final)
        ctx.files.release(partial)
        ctx.files.release(final)
        if written.chunks is not None:
            ctx.files.release(written.chunks.path.path)
        ctx.clock.end("finalizing", written.sizeBytes)
        ctx.ticker.stop()
        return Artifact(path=FilePath(final), name=name, sizeBytes=written.sizeBytes,
                        checksum=ctx.options.checksum, digest=written.digest,
                        stageTimings=list(ctx.clock.timings), chunks=written.chunks)
    except Exception:
        await _abandon(ctx)
        raise


async def _abandon(ctx: RunContext) -> None:
    """Stop and kill everything of the run, wait for it, remove its files."""
    ctx.ticker.stop()
    ctx.stopEverything()
    try:
        await waitQuietly(ctx.reactor, ctx.running, ctx.stopEverything)
    finally:
        ctx.files.removeAll()
