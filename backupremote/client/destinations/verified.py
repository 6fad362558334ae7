"""
Put, read back, compare, complete: one delivery of one file to one
destination, with nothing unverified ever under the final name.
"""

from __future__ import annotations

from typing import BinaryIO

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from backupremote.client.destinations.interface import (
    DigestCounter,
    IDestination,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    StoredFile,
    UploadState,
)
from backupremote.protocol.errors import (
    DESTINATION_VERIFY_FAILED,
    INTERNAL_ERROR,
    VERIFICATION_FAILED,
    BackupRemoteError,
)

log = Logger()

#: Bytes per read of L{localDigest}.
HASH_BLOCK = 256 << 10


def openSource(source: FilePath[str]) -> BinaryIO:
    """The local artifact, opened unbuffered for an upload; a clear error if it cannot be."""
    try:
        return open(source.path, "rb", buffering=0)
    except OSError as e:
        raise BackupRemoteError(
            INTERNAL_ERROR, f"cannot read the local file {source.path}: {e.strerror}"
        ) from None


def localDigest(source: FilePath[str]) -> ReadBack:
    """The size and SHA-256 of the local file C{source}. Blocks: run it in a thread."""
    counter = DigestCounter()
    with openSource(source) as handle:
        for block in iter(lambda: handle.read(HASH_BLOCK), b""):
            counter.update(block)
    return counter.readBack()


def checkReadBack(destination: IDestination, upload: PendingUpload, found: ReadBack) -> None:
    """
    Raise C{DESTINATION_VERIFY_FAILED} unless C{found} is what C{upload}
    put there: the bytes sent, of the SHA-256 computed while sending them or
    known beforehand (L{KnownDigest}).
    """
    if (found.size, found.sha256) != (upload.size, upload.sha256):
        raise BackupRemoteError(
            DESTINATION_VERIFY_FAILED,
            f"{destination.location}: the copy of {upload.name} read back has "
            f"{found.size} bytes and SHA-256 {found.sha256}, not the {upload.size} "
            f"bytes with SHA-256 {upload.sha256} that were put there",
            details={"name": upload.name, "size": found.size, "sha256": found.sha256})


def checkSent(destination: IDestination, source: FilePath[str], upload: PendingUpload,
              expected: KnownDigest) -> None:
    """
    Raise C{VERIFICATION_FAILED} unless C{upload} sent C{expected}'s bytes
    (only the size, where C{expected} was handed to the put as known).
    """
    if (upload.size, upload.sha256) != (expected.size, expected.sha256):
        raise BackupRemoteError(
            VERIFICATION_FAILED,
            f"the local file {source.path} sent to {destination.location} has "
            f"{upload.size} bytes and SHA-256 {upload.sha256}, not the artifact's "
            f"{expected.size} bytes and {expected.sha256}: it changed after its download")


async def discard(destination: IDestination, upload: PendingUpload | UploadState) -> None:
    """Remove an upload's temporary file (or unfinished upload), logging (not raising) a failure."""
    try:
        await destination.delete(upload.temporaryName)
    except Exception as e:
        log.warn("could not remove {temporary} from {location}: {error}",
                 temporary=upload.temporaryName, location=destination.location, error=str(e))


async def putVerified(
    destination: IDestination,
    source: FilePath,
    name: str,
    known: KnownDigest | None = None,
    progress: Progress | None = None,
) -> StoredFile:
    """
    Deliver C{source} to C{destination} under C{name}: put it under a
    temporary name (hashing what is sent, or trusting C{known}, the
    artifact's size and SHA-256), check that the size sent is C{known}'s,
    read it back, compare with the SHA-256, and only then complete it under
    C{name}. On any failure (or cancellation) the temporary file is removed
    and nothing is under C{name} that was not verified; C{source} is only
    ever read.

    @raise BackupRemoteError: C{VERIFICATION_FAILED} if the local file has
        not C{known}'s size, C{DESTINATION_VERIFY_FAILED} if the read-back
        differs (from C{known}'s SHA-256 too: the local file is not the
        artifact, or the destination altered it), or the destination's own
        error.
    """
    upload = await destination.put(source, name, progress, known=known)
    try:
        if known is not None:
            checkSent(destination, source, upload, known)
        found = await destination.readBack(upload.temporaryName)
        checkReadBack(destination, upload, found)
        await destination.complete(upload)
    except BaseException:
        await discard(destination, upload)
        raise
    return StoredFile(upload.name, found.size, found.sha256, found.method)
