"""
What every destination does: L{IDestination} and the values it exchanges.

A destination is one place an artifact is delivered to (a local folder, an
SFTP or FTP server, a WebDAV share, an S3 bucket, an rclone remote). Its
operations are small steps the delivery composes and persists one by one:

    put(source, name[, progress, journal, known]) -> PendingUpload
                                 bytes under a temporary name
    readBack(temporaryName)      -> ReadBack        size and SHA-256 read back
    complete(upload)             -> None            now under the final name
    listFiles(), delete(name), testConnection(), close()

so no partial or unverified file ever sits under a final name, and a delivery
that stops between two steps resumes from the last one it recorded.
L{backupremote.client.destinations.verified.putVerified} chains the first
three with the comparisons.

A put given a L{KnownDigest} (the artifact's size and SHA-256, which its
download checked against the server's manifest) only counts the bytes it
sends instead of hashing them again: the read-back then checks the
destination's copy against that known SHA-256, which proves as much (a local
file that changed since its download fails the read-back). Without one a
put hashes what it sends.

A put given an L{IUploadJournal} records in it each step of its upload that
the server confirmed (an S3 multipart upload: its id, then each part), and a
later put of the same file with the same journal takes that upload up again
instead of sending every byte anew; a destination whose protocol cannot
resume (or a journal whose upload is gone, or a local file that changed)
starts over. A journalled upload that fails or is cancelled is left for
that later put; L{IDestination.delete} of its temporary name drops it.

Every method returns a L{Deferred} and never blocks the reactor: network
destinations speak their protocol on the reactor (or in a thread where the
only good client is blocking, like FTPS), a local folder does its disk work in
a thread. Uploads stream from the local file with bounded memory; read-backs
stream into a hash. Failures are L{BackupRemoteError}s with a C{DESTINATION_*}
code of the registry (C{CONFIG_INVALID} for a bad name, C{TIMEOUT} for a
timeout), whose messages carry no secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime

from attrs import field, frozen
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from zope.interface import Attribute, Interface

#: Called with the number of bytes sent so far (monotonic, ends at the size).
Progress = Callable[[int], None]

#: C{ReadBack.method} of a read-back that streamed the whole file back.
STREAMED = "streamed-sha256"


@frozen
class PendingUpload:
    """
    A file put under a temporary name, not yet completed. Plain data: the
    delivery persists it to verify, complete or remove it after a restart.

    @ivar name: the final name it is going to (see L{names}).
    @ivar temporaryName: where its bytes are now, in the same folder.
    @ivar size: the bytes sent.
    @ivar sha256: the lowercase hex SHA-256 of the bytes sent, computed while
        sending them, or the one of the L{KnownDigest} handed to the put
        (then only the read-back proves that the copy has it).
    """

    name: str
    temporaryName: str
    size: int
    sha256: str


def _lowercase(hexDigest: str) -> str:
    return hexDigest.lower()


@frozen
class KnownDigest:
    """
    The size and SHA-256 a local file is known to have: the artifact's, from
    the server's manifest, which its download checked. A put handed one does
    not hash the source again (L{DigestCounter} only counts); its
    L{PendingUpload} carries this SHA-256 for the read-back to check.
    """

    size: int
    sha256: str = field(converter=_lowercase)


@frozen
class UploadedPart:
    """
    One part of an upload that the server confirmed.

    @ivar start: @ivar length: its bytes in the local file.
    @ivar etag: what the server answered for it (S3's ETag).
    @ivar sha256: the lowercase hex SHA-256 of the local bytes sent.
    """

    number: int
    start: int
    length: int
    etag: str
    sha256: str


@frozen
class UploadState:
    """
    An upload begun under a temporary name, as far as the server confirmed
    it: plain data its L{IUploadJournal} persists, for a later put to take
    up again.

    @ivar uploadId: the server's id of the upload (an S3 multipart upload id).
    @ivar size: @ivar modifiedNs: the local file's size and modification
        time (ns) when it began: a file changed since is sent anew.
    @ivar partSize: the bytes of each part but the last.
    @ivar parts: those the server confirmed, by number.
    """

    name: str
    temporaryName: str
    uploadId: str
    size: int
    modifiedNs: int
    partSize: int
    parts: tuple[UploadedPart, ...] = ()


@frozen
class ReadBack:
    """
    What the destination holds under a name, as read back.

    @ivar method: how it was obtained: L{STREAMED} (the bytes were read back
        and hashed here) or a destination-specific name for a hash the
        destination computed, where that is trustworthy.
    """

    size: int
    sha256: str
    method: str = STREAMED


@frozen
class RemoteFile:
    """
    One file in a destination's listing.

    @ivar name: its name relative to the destination's root (see L{names}).
    @ivar modified: its modification time (aware, UTC) if the destination
        reports one.
    @ivar temporary: whether it is an unfinished upload (a temporary name):
        never a backup, only something to clean up.
    """

    name: str
    size: int
    modified: datetime | None = None
    temporary: bool = False


@frozen
class StoredFile:
    """A file delivered and verified: what a receipt records of it."""

    name: str
    size: int
    sha256: str
    method: str


class IDestination(Interface):
    """
    One destination: a root (folder, bucket prefix, remote path) on one
    server, with its credentials. Names are relative to the root and valid
    per L{backupremote.client.destinations.names.checkName}: one file name,
    or one folder and a file name (C{"2026-11-03/db.sql.zst"}); folders are
    created as needed.
    """

    type: str = Attribute(
        "The destination type (C{local}, C{sftp}, C{ftp}, C{ftps}, C{webdav}, "
        "C{s3}, C{rclone}); its licence feature is C{destination.<type>}.")
    location: str = Attribute("Where it delivers, for messages and logs: no secret in it.")

    def testConnection() -> Deferred[None]:
        """
        Connect, authenticate (checking the server's identity) and check that
        the root exists and can be written (a small probe file is written
        and removed).
        """

    def put(source: FilePath, name: str, progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        """
        Stream C{source} (read only, never changed) to a new temporary name in
        the folder of C{name}; nothing is put under C{name} itself. The
        upload's SHA-256 is that of the bytes sent, or C{known}'s without
        hashing them (its size is always the bytes sent). On
        failure or cancellation the temporary file is removed where the
        destination still allows it, except an upload recorded in
        C{journal}: that one is kept for a later put with the same journal
        to take up again (a destination that cannot resume ignores
        C{journal} and always starts over).
        """

    def readBack(name: str) -> Deferred[ReadBack]:
        """
        The size and SHA-256 of what the destination holds under C{name}
        (a final or a temporary name), read back as a stream.

        @raise BackupRemoteError: C{DESTINATION_NOT_FOUND} if there is none.
        """

    def complete(upload: PendingUpload) -> Deferred[None]:
        """
        Put the (verified) temporary file under its final name, atomically
        where the destination can (rename, server-side copy, multipart
        completion), replacing a file of that name. Afterwards the temporary
        name is gone.

        @raise BackupRemoteError: C{DESTINATION_NOT_FOUND} if the temporary
            file is gone.
        """

    def listFiles() -> Deferred[list[RemoteFile]]:
        """
        The files under the root and its folders (one level deep), temporary
        ones marked as such, in no particular order. Other things found
        there (deeper folders, links, names we would never write) are left
        out.
        """

    def delete(name: str) -> Deferred[None]:
        """
        Remove C{name} (final or temporary, and an unfinished upload to a
        temporary name); succeeds if it is already gone.
        """

    def close() -> Deferred[None]:
        """Close connections kept open between operations (idempotent)."""


class IUploadJournal(Interface):
    """
    Where a put records how far its upload got, one step the server
    confirmed at a time, so that a put after a crash, a stop or a failure
    takes it up again (the delivery queue keeps it in the client's store).
    """

    state: UploadState | None = Attribute(
        "The upload recorded so far (by an earlier put or this one), or C{None}.")

    def begin(state: UploadState) -> Deferred[None]:
        """
        A new upload began (C{state} has no parts yet), replacing any
        recorded before; fires once recorded.
        """

    def confirmed(uploadId: str, part: UploadedPart) -> Deferred[None]:
        """
        The server confirmed C{part} of the upload C{uploadId} (never called
        before it did); fires once recorded.
        """


class DigestCounter:
    """
    A SHA-256 and a byte count fed by a stream; given a L{KnownDigest}, only
    the count (the SHA-256 is the known one): what a put feeds what it sends.
    """

    def __init__(self, known: KnownDigest | None = None) -> None:
        self._hash = hashlib.sha256() if known is None else None
        self._known = known
        self.size = 0

    def update(self, data: bytes | memoryview) -> None:
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)

    def hexdigest(self) -> str:
        if self._hash is None:
            assert self._known is not None
            return self._known.sha256
        return self._hash.hexdigest()

    def readBack(self, method: str = STREAMED) -> ReadBack:
        return ReadBack(self.size, self.hexdigest(), method)
