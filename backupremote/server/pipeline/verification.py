"""
The verification stage: the artifact is read back whole before it is offered.

Always: the artifact is read once and its checksum recomputed and compared
with the one made while writing. Then, by the run's C{verification}:

  - C{none}: nothing more;
  - C{stream}: the stream is decompressed completely (the compressor's own
    integrity checks: zstd's and xz's checksums, gzip's and zip's CRC) and
    the engine's cheap check looks at it: the archive's header (pg_restore
    C{-l} reading the table of contents of a custom archive, the SQLite and
    gbak headers) or the dump's trailer (plain PostgreSQL, MariaDB);
  - C{full}: as C{stream}, with the engine's complete check instead:
    C{pg_restore -f /dev/null} replays a custom archive entirely, gbak
    restores a Firebird backup into a scratch database, SQLite runs
    C{PRAGMA integrity_check} on the decompressed file.

Any failure is C{VERIFICATION_FAILED} (the run then removes the artifact);
scratch files are removed in every case.
"""

from __future__ import annotations

import os
from typing import Any

from attrs import frozen

from backupremote.childprocess import Child, Exit, baseEnvironment
from backupremote.outcome import Outcome
from backupremote.protocol.errors import (
    DISK_FULL,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.server.engines.base import lastLines
from backupremote.server.engines.dumps import BackupStopped, DumpPlan, EngineCheck
from backupremote.server.machinery.compressors import CompressionPlan
from backupremote.server.pipeline.context import RunContext
from backupremote.server.pipeline.dumping import Written
from backupremote.server.pipeline.inspection import (
    ArtifactReader,
    PipeFeed,
    StreamInspector,
)
from backupremote.server.pipeline.sink import Stopped, enlargePipe, isDiskFull
from backupremote.server.pipeline.waiting import waitForAll


@frozen
class Verified:
    """What verification read: the artifact's bytes, and the decompressed size if seen."""

    bytesRead: int
    decompressedBytes: int | None


def _failed(message: str) -> BackupRemoteError:
    return BackupRemoteError(VERIFICATION_FAILED, message)


def _partFailed(outcome: Outcome[Any]) -> bool:
    if outcome.failure is not None:
        return True
    return isinstance(outcome.value, Exit) and not outcome.value.ok


class _Message:
    """Tool messages for errors: last lines, no run folder path, no secret."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx

    def __call__(self, text: str, count: int = 4) -> str:
        joined = lastLines(text, count, self._ctx.target.password, separator="; ")
        return (joined or "no message").replace(self._ctx.files.runDir.path, "[run folder]")


async def verifyStage(ctx: RunContext, plan: DumpPlan, compression: CompressionPlan,
                      path: str, written: Written) -> Verified:
    """Verify the artifact at C{path} as C{ctx.options.verification} asks."""
    ctx.clock.start("verification")
    size = os.path.getsize(path)
    reader = ArtifactReader(path, ctx.options.checksum, ctx.stop, ctx.hooks.chunkSize)
    ctx.ticker.follow("verification", lambda: (reader.bytesRead, size))
    mode = ctx.options.verification
    if mode == "none":
        try:
            digest = await ctx.thread("backupremote-verify", reader.run, None).when()
        except OSError as error:
            raise _failed(f"the artifact could not be read back: {error.strerror}") from None
        _compareDigest(digest, written)
        ctx.clock.end("verification", reader.bytesRead)
        return Verified(reader.bytesRead, None)
    scratch: list[str] = []
    try:
        inspected = await _inspect(ctx, plan.check, compression, reader, path, written,
                                   mode == "full", scratch)
        fileCheck = plan.check.fileCheck
        if fileCheck is not None and mode == "full":
            target = scratch[0] if scratch else path
            problem = await ctx.thread("backupremote-file-check", fileCheck,
                                       target, ctx.stop).when()
            if problem is not None:
                raise _failed(f"{plan.check.description} of the backup failed: {problem}")
    except BackupStopped:
        raise Stopped() from None
    finally:
        for scratchPath in scratch:
            ctx.files.remove(scratchPath)
    ctx.clock.end("verification", reader.bytesRead)
    return Verified(reader.bytesRead, inspected)


def _startChecker(ctx: RunContext, check: EngineCheck, full: bool, base: str,
                  scratch: list[str]) -> tuple[Child | None, int | None]:
    """
    Start the engine's checking program, if this check has one: the child
    and the write end of its stdin (the caller owns it), or C{(None, None)}.
    """
    if full and check.fullArgv is not None:
        scratchPath = ""
        if check.fullScratchSuffix:
            scratchPath = ctx.files.claim(base + ".verify" + check.fullScratchSuffix)
            scratch.append(scratchPath)
        argv = check.fullArgv(scratchPath)
    elif check.streamArgv is not None:
        argv = check.streamArgv
    else:
        return None, None
    checkRead, forward = os.pipe()
    try:
        enlargePipe(forward)
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            checker = ctx.children.spawn("checker", argv, check.env or baseEnvironment(),
                                         {0: checkRead, 1: devnull, 2: "r"})
        finally:
            os.close(devnull)
    except BaseException:
        os.close(forward)
        raise
    finally:
        os.close(checkRead)
    return checker, forward


def _startDecompressor(ctx: RunContext, compression: CompressionPlan
                       ) -> tuple[Child, int, int]:
    """The decompressor, the write end of its stdin and the read end of its stdout."""
    feedRead, feedWrite = os.pipe()
    outRead, outWrite = os.pipe()
    try:
        enlargePipe(feedWrite)
        enlargePipe(outWrite)
        decompressor = ctx.children.spawn(
            "decompressor", compression.decompressArgv(), baseEnvironment(),
            {0: feedRead, 1: outWrite, 2: "r"})
    except BaseException:
        os.close(feedWrite)
        os.close(outRead)
        raise
    finally:
        os.close(feedRead)
        os.close(outWrite)
    return decompressor, feedWrite, outRead


async def _inspect(ctx: RunContext, check: EngineCheck, compression: CompressionPlan,
                   reader: ArtifactReader, path: str, written: Written, full: bool,
                   scratch: list[str]) -> int:
    """
    Read the artifact back (hashing it), decompress it, and check the
    stream::

        reader thread -> decompressor -> inspector thread -> checker
          (hash)                          (head, tail, copy)

    (zstd decompresses in the reader's thread: reader -> checker.)

    The decompressed size is returned.
    """
    base = os.path.basename(path)
    checker, forward = _startChecker(ctx, check, full, base, scratch)
    copyPath = None
    if full and check.fileCheck is not None and compression.compresses:
        copyPath = ctx.files.claim(base + ".verify" + check.fullScratchSuffix)
        scratch.append(copyPath)
    try:
        inspector = StreamInspector(forward, copyPath)
    except BaseException:
        if forward is not None:
            os.close(forward)
        raise
    parts: list[Outcome[Any]] = [] if checker is None else [checker.ended]
    decompressor: Child | None = None
    readBack = compression.readBack(reader)
    if readBack is not None:
        # decompressed in the server (or nothing to decompress)
        readerJob = ctx.thread("backupremote-verify", readBack, inspector)
    else:
        try:
            decompressor, feed, decompressed = _startDecompressor(ctx, compression)
        except BaseException:
            inspector.finish()
            raise
        parts.append(decompressor.ended)
        readerJob = ctx.thread("backupremote-verify", reader.run, PipeFeed(feed))
        parts.append(ctx.thread("backupremote-inspect", inspector.drain, decompressed,
                                ctx.stop))
    parts.append(readerJob)
    await waitForAll(ctx.reactor, parts, _partFailed)
    _judge(ctx, check, compression, reader, readerJob, parts, decompressor, checker,
           inspector, written)
    return inspector.byteCount


def _compareDigest(digest: str, written: Written) -> None:
    if digest != written.digest:
        raise _failed("the artifact read back does not match the checksum computed while "
                      "writing it: the server's disk or memory may be failing")


def _judge(ctx: RunContext, check: EngineCheck, compression: CompressionPlan,
           reader: ArtifactReader, readerJob: Outcome[str], parts: list[Outcome[Any]],
           decompressor: Child | None, checker: Child | None, inspector: StreamInspector,
           written: Written) -> None:
    """Raise the first problem found, most fundamental first."""
    message = _Message(ctx)
    for part in parts:
        failure = part.failure
        if failure is not None and isinstance(failure.value, Stopped):
            failure.raiseException()
        if failure is not None and isDiskFull(failure.value):
            raise BackupRemoteError(DISK_FULL, "the server's temp folder is full: the backup "
                                    "could not be checked; its files were removed")
    failure = readerJob.failure
    if failure is not None:
        error = failure.value
        text = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise _failed(f"the artifact could not be read back: {text}")
    if readerJob.done:
        _compareDigest(readerJob.value, written)
    if decompressor is not None and decompressor.finished and not decompressor.ended.value.ok:
        raise _failed(f"the artifact does not decompress ({compression.compression}): "
                      + message(decompressor.ended.value.stderr, 2))
    if reader.unpackError is not None:
        raise _failed(f"the artifact does not decompress ({compression.compression}): "
                      f"{reader.unpackError}")
    engine = check.description
    if checker is not None and checker.finished and not checker.ended.value.ok:
        raise _failed(f"{engine} rejected the backup: {message(checker.ended.value.stderr)}")
    for part in parts:
        if part.failure is not None:
            raise _failed(f"the artifact could not be checked: {part.failure.value}")
    if not all(part.done for part in parts):
        raise _failed("the verification did not complete")
    if check.head is not None and not check.head(inspector.head):
        raise _failed("the decompressed backup does not start with its format's header: "
                      "it is damaged or not a backup of this engine")
    if check.trailer is not None and check.trailer not in inspector.tail:
        raise _failed("the dump is incomplete: it does not end with "
                      f"{check.trailer.decode()!r}")
