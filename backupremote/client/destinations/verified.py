"""
Put, read back, compare, complete: one delivery of one file to one
destination, with nothing unverified ever under the final name.
"""

from __future__ import annotations

from typing import BinaryIO

from twisted.logger import Logger
from twisted.python.filepath import FilePath

from backupremote.client.destinations.interface import (
    IDestination,
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


def openSource(source: FilePath[str]) -> BinaryIO:
    """The local artifact, opened unbuffered for an upload; a clear error if it cannot be."""
    try:
        return open(source.path, "rb", buffering=0)
    except OSError as e:
        raise BackupRemoteError(
            INTERNAL_ERROR, f"cannot read the local file {source.path}: {e.strerror}"
        ) from None


def checkReadBack(destination: IDestination, upload: PendingUpload, found: ReadBack) -> None:
    """Raise C{DESTINATION_VERIFY_FAILED} unless C{found} is what C{upload} sent."""
    if (found.size, found.sha256) != (upload.size, upload.sha256):
        raise BackupRemoteError(
            DESTINATION_VERIFY_FAILED,
            f"{destination.location}: the copy of {upload.name} read back has "
            f"{found.size} bytes and SHA-256 {found.sha256}, but {upload.size} "
            f"bytes with SHA-256 {upload.sha256} were sent",
            details={"name": upload.name, "size": found.size, "sha256": found.sha256})


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
    expectedSize: int | None = None,
    expectedSha256: str | None = None,
    progress: Progress | None = None,
) -> StoredFile:
    """
    Deliver C{source} to C{destination} under C{name}: put it under a
    temporary name, check that what was sent is the expected artifact, read
    it back, compare, and only then complete it under C{name}. On any failure
    (or cancellation) the temporary file is removed and nothing is under
    C{name} that was not verified; C{source} is only ever read.

    @raise BackupRemoteError: C{VERIFICATION_FAILED} if the local file is not
        the expected artifact, C{DESTINATION_VERIFY_FAILED} if the read-back
        differs, or the destination's own error.
    """
    upload = await destination.put(source, name, progress)
    try:
        if (expectedSize is not None and upload.size != expectedSize) or (
                expectedSha256 is not None and upload.sha256 != expectedSha256.lower()):
            raise BackupRemoteError(
                VERIFICATION_FAILED,
                f"the local file {source.basename()} sent to {destination.location} has "
                f"{upload.size} bytes and SHA-256 {upload.sha256}, not the artifact's "
                f"{expectedSize} bytes and {expectedSha256}")
        found = await destination.readBack(upload.temporaryName)
        checkReadBack(destination, upload, found)
        await destination.complete(upload)
    except BaseException:
        await discard(destination, upload)
        raise
    return StoredFile(upload.name, found.size, found.sha256, found.method)
