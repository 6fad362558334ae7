"""
The deliver step of a job, behind L{IDelivery}.

For now a job delivers to local folders only (L{LocalFolderDelivery}: the
copy the demo made); the destinations and the delivery queue of issue 12
take its place behind the same Interface, with their own retries.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.filepath import FilePath
from zope.interface import Interface, implementer

from backupremote.client.jobs.model import Job, LocalFolder, Receipt, UploadProgress
from backupremote.filewriting import fsyncFolder
from backupremote.private import makePrivateFolder
from backupremote.protocol.errors import (
    CONFLICT,
    INTERNAL_ERROR,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.reactors import inThreadPool

#: C{Receipt.method} of a local copy read back whole and hashed.
COPIED = "copy+read-back-sha256"


class IDelivery(Interface):
    """Puts a job's verified artifact in each of its destinations."""

    def deliver(job: Job, artifact: FilePath,
                progress: Callable[[UploadProgress], None] | None = None
                ) -> Deferred[list[Receipt]]:
        """
        Deliver C{artifact} (whose SHA-256 is C{job.artifact.sha256}) to
        every destination of C{job}; fires with a receipt for each, telling
        C{progress} how each upload goes (where it can). A
        destination that holds the same file already (delivered before a
        crash) counts as delivered without a second copy; one that holds
        another file under that name fails the step (C{CONFLICT}): nothing
        is overwritten.
        """

    def stop() -> Deferred[None]:
        """Stop what runs in the background (the job runner stops); it resumes when used again."""


@implementer(IDelivery)
class DeliveryWhenNeeded:
    """
    The delivery C{build} makes, made when first asked to deliver: the
    runner asks only for a job that has a destination, so a command whose
    job has none (C{download}, C{run --wait}) imports none of the
    destinations, the queue or their licences (about 60 ms of a CLI
    command's imports).
    """

    def __init__(self, build: Callable[[], IDelivery]) -> None:
        self._build = build
        self._delivery: IDelivery | None = None

    def deliver(self, job: Job, artifact: FilePath[str],
                progress: Callable[[UploadProgress], None] | None = None
                ) -> Deferred[list[Receipt]]:
        if self._delivery is None:
            self._delivery = self._build()
        return self._delivery.deliver(job, artifact, progress)

    def stop(self) -> Deferred[None]:
        return succeed(None) if self._delivery is None else self._delivery.stop()


class DeliveryFailed(BackupRemoteError):
    """
    A delivery that ended badly for good (its attempts used up, or refused,
    a licence included): the job fails at its deliver step with this code,
    whatever it is, rather than wait as it does for its server.
    """


@implementer(IDelivery)
class LocalFolderDelivery:
    """Copies into local folders: temporary name, fsync, read back, rename."""

    def __init__(self, clock: IReactorTime,
                 runInThread: Callable[..., Deferred[Any]] | None = None) -> None:
        self._clock = clock
        self._runInThread = runInThread or (
            inThreadPool(clock))

    def stop(self) -> Deferred[None]:
        return succeed(None)

    def deliver(self, job: Job, artifact: FilePath,
                progress: Callable[[UploadProgress], None] | None = None
                ) -> Deferred[list[Receipt]]:
        async def deliverAll() -> list[Receipt]:
            assert job.artifact is not None
            receipts = []
            for destination in job.destinations:
                if not isinstance(destination, LocalFolder):
                    raise BackupRemoteError(INTERNAL_ERROR, (
                        f"this client cannot deliver to {destination.type!r} destinations yet"))
                size, digest = await self._runInThread(
                    copyInto, artifact, FilePath(destination.path), job.artifact.sha256)
                receipts.append(Receipt(
                    destination.name, artifact.basename(), size, digest, COPIED,
                    datetime.fromtimestamp(self._clock.seconds(), timezone.utc)))
            return receipts

        return Deferred.fromCoroutine(deliverAll())


def _sha256(path: str) -> tuple[int, str]:
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256")
        return os.fstat(handle.fileno()).st_size, digest.hexdigest()


def copyInto(artifact: FilePath, folder: FilePath, sha256: str) -> tuple[int, str]:
    """
    Copy C{artifact} into C{folder} under its own name; (size, SHA-256 read
    back). Blocks: run it in a thread.
    """
    makePrivateFolder(folder)
    final = folder.child(artifact.basename())
    if final.exists():
        size, digest = _sha256(final.path)
        if digest == sha256:
            return size, digest  # delivered already (before a restart)
        raise BackupRemoteError(CONFLICT, (
            f"{final.path} exists and is another file; move it away, then run the job "
            "again"))
    part = folder.child(f".{artifact.basename()}.part")
    with open(artifact.path, "rb") as source, open(
            os.open(part.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600),
            "wb", closefd=True) as target:
        while block := source.read(1 << 20):
            target.write(block)
        target.flush()
        os.fsync(target.fileno())
    size, digest = _sha256(part.path)
    if digest != sha256:
        part.remove()
        raise BackupRemoteError(VERIFICATION_FAILED, (
            f"the copy in {folder.path} does not match the artifact's SHA-256 (read back "
            "after writing it); nothing was delivered there"))
    os.rename(part.path, final.path)
    fsyncFolder(folder)
    return size, digest
