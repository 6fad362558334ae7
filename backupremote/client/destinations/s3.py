"""
An S3-compatible bucket (AWS, rclone serve s3, MinIO, Ceph, Wasabi, ...) as a
destination.

A file goes to a temporary key in the folder of its final key, in one
C{PutObject} up to a part's size, else as our own multipart upload: parts of
C{partSize} bytes (16-64 MiB, larger only past 10,000 parts), a few in
flight, each read from the local file twice: once in a thread to compute its
MD5 and SHA-256 (and the whole file's SHA-256, part after part), then
streamed from the file as the request body (signed with that SHA-256, with
that C{Content-MD5}; the server refuses a part that differs). No part is ever held in memory,
whatever the file's size. A failed or cancelled upload is aborted; uploads of
ours left by a crash are aborted once they are older than C{staleAfter},
except those our store means to resume (C{recorded}).

A put given an L{IUploadJournal} records the upload's id, then each part
once the server confirmed it, and keeps the upload when it fails or is
cancelled. The next put with that journal takes it up: C{ListParts}, the
recorded parts the server still holds (same number, size and ETag) whose
local bytes still hash the same are not sent again, the others are, then
it completes as usual (the whole file's SHA-256 is computed anew from the
local file, part after part, unless the put was handed it as a
L{KnownDigest}: each part's own SHA-256 and MD5 are computed all the same,
for the request's signature and C{Content-MD5}). It starts over, saying so in the log, if the
upload is gone (aborted, expired) or the local file's size or modification
time changed since the upload began.

The read-back streams the temporary object back into a SHA-256. Completing is
a server-side copy to the final key (C{CopyObject}, or C{UploadPartCopy} parts
past 5 GiB) guarded by C{x-amz-copy-source-if-match} on the verified
object's ETag, with our SHA-256 (the verified one: computed, or the known one the
read-back matched) in the object's metadata
(C{x-amz-meta-sha256}: an S3 ETag is not an MD5 for a multipart object),
then the temporary key is deleted. The final key holds either its previous
object or the verified one, never a partial or unverified one.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from attrs import frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredList, DeferredSemaphore
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.httpsession import BytesProducer, HTTPSession
from backupremote.client.destinations.httptls import PeerVerification
from backupremote.client.destinations.interface import (
    DigestCounter,
    IDestination,
    IUploadJournal,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    RemoteFile,
    UploadedPart,
    UploadState,
)
from backupremote.client.destinations.names import (
    PROBE_PREFIX,
    checkAnyName,
    checkName,
    finalNameOf,
    isListable,
    isTemporary,
    temporaryName,
)
from backupremote.client.destinations.s3api import SHA256_METADATA, S3Bucket, sameETag
from backupremote.client.destinations.urls import S3URL
from backupremote.protocol.errors import (
    DESTINATION_NOT_FOUND,
    DESTINATION_UNREACHABLE,
    DESTINATION_VERIFY_FAILED,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.reactors import ITransferReactor

log = Logger()

MiB = 1 << 20
#: The default part size, and the largest used unless 10,000 parts need more.
PART_SIZE = 16 * MiB
MAX_PART_SIZE = 64 * MiB
#: S3's limits: parts per upload, bytes per single copy.
MAX_PARTS = 10_000
COPY_LIMIT = 5 * 1024 * MiB
#: Parts uploading at once.
PARTS_IN_FLIGHT = 3
#: Attempts per part (a part is retried after a lost connection or a busy server).
PART_ATTEMPTS = 3
#: Our multipart uploads older than this are taken as abandoned and aborted.
STALE_AFTER = 24 * 3600.0
#: At most one check for stale uploads per this many seconds.
STALE_CHECK_INTERVAL = 3600.0
#: Bytes hashed per read in the thread.
HASH_BLOCK = 1 * MiB

#: The upload ids our store means to resume at this destination (never aborted as stale).
RecordedUploads = Callable[[], Awaitable[Collection[str]]]


@frozen
class PartPlan:
    number: int
    offset: int
    length: int


@frozen
class PartDigest:
    md5: bytes
    sha256: str


def partSizeFor(size: int, preferred: int = PART_SIZE) -> int:
    """The part size for a file of C{size} bytes: C{preferred}, or more if 10,000 parts are too few."""
    needed = -(-size // MAX_PARTS)
    if needed <= preferred:
        return preferred
    return -(-needed // MiB) * MiB


def planParts(size: int, partSize: int) -> list[PartPlan]:
    return [PartPlan(number, offset, min(partSize, size - offset))
            for number, offset in enumerate(range(0, size, partSize), start=1)]


def hashSlice(path: str, offset: int, length: int, whole: DigestCounter | None) -> PartDigest:
    """MD5 and SHA-256 of C{[offset, offset + length)} of a file (in a thread)."""
    md5 = hashlib.md5()
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = length
        while remaining:
            block = f.read(min(HASH_BLOCK, remaining))
            if not block:
                raise OSError(f"{path} became shorter while it was read")
            remaining -= len(block)
            md5.update(block)
            sha.update(block)
            if whole is not None:
                whole.update(block)
    return PartDigest(md5.digest(), sha.hexdigest())


class _Progress:
    """Bytes sent per part, reported as a monotonic total (retries do not count twice)."""

    def __init__(self, report: Progress | None) -> None:
        self._report = report
        self._parts: dict[int, int] = {}
        self._current: dict[int, int] = {}
        self._total = 0

    def sender(self, number: int) -> Callable[[bytes], None]:
        self._current[number] = 0

        def sent(block: bytes) -> None:
            self._current[number] += len(block)
            if self._current[number] > self._parts.get(number, 0):
                self._total += self._current[number] - self._parts.get(number, 0)
                self._parts[number] = self._current[number]
                if self._report is not None:
                    self._report(self._total)
        return sent

    def skipped(self, number: int, length: int) -> None:
        """Part C{number} is on the server already (a resumed upload): count it as sent."""
        self._current[number] = length
        self._parts[number] = length
        self._total += length
        if self._report is not None:
            self._report(self._total)

    def finish(self, size: int) -> None:
        if self._report is not None and (self._total < size or size == 0):
            self._report(size)


@implementer(IDestination)
class S3Destination:
    """
    The keys under C{prefix} in one bucket: C{NAME} is C{prefix + NAME}.
    """

    type = "s3"

    def __init__(self, reactor: ITransferReactor, url: S3URL, secretKey: str,
                 verification: PeerVerification | None = None,
                 timeout: float = 60.0, partSize: int = PART_SIZE,
                 partsInFlight: int = PARTS_IN_FLIGHT,
                 staleAfter: float = STALE_AFTER,
                 retryDelay: float = 2.0, copyLimit: int = COPY_LIMIT,
                 recorded: RecordedUploads | None = None) -> None:
        self._reactor = reactor
        self.url = url
        self.location = f"S3 {url.endpoint}/{url.bucket}/{url.prefix}"
        self.partSize = partSize
        self.partsInFlight = partsInFlight
        self.staleAfter = staleAfter
        self.retryDelay = retryDelay
        self.copyLimit = copyLimit
        self._lastStaleCheck: float | None = None
        self._recorded = recorded
        self._session = HTTPSession(reactor, self.location, None, verification, timeout)
        self._bucket = S3Bucket(self._session, url.endpoint, url.bucket, url.accessKey,
                                secretKey, url.region)

    def _key(self, name: str) -> str:
        return self.url.prefix + name

    def _inThread(self, function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), function, *args)

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._testConnection())

    async def _testConnection(self) -> None:
        await self._bucket.listObjects(self.url.prefix, limit=1)
        probe = self._key(PROBE_PREFIX + secrets.token_hex(8))
        data = b"backupremote probe\n"
        await self._putSmall(probe, data)
        await self._bucket.deleteObject(probe)
        await self.abortStaleUploads()

    async def _putSmall(self, key: str, data: bytes) -> None:
        await self._bucket.putObject(key, BytesProducer(data), hashlib.md5(data).digest(),
                                     hashlib.sha256(data).hexdigest())

    def put(self, source: FilePath, name: str, progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        return Deferred.fromCoroutine(self._put(source, name, progress, journal, known))

    async def _put(self, source: FilePath, name: str, progress: Progress | None,
                   journal: IUploadJournal | None, known: KnownDigest | None) -> PendingUpload:
        checkName(name)
        path = source.path
        stat = os.stat(path)  # OSError for a missing file, before anything is sent
        size = stat.st_size
        recorded = journal.state if journal is not None else None
        await self._maybeAbortStale(() if recorded is None else (recorded.uploadId,))
        whole = DigestCounter(known)
        sent = _Progress(progress)
        if size > self.partSize:
            temporary = await self._multipart(name, path, size, stat.st_mtime_ns, whole, sent,
                                              journal)
        else:
            if recorded is not None:
                await self._startOver(recorded, "the local file is now small enough for one "
                                      "request")
            temporary = temporaryName(name)
            key = self._key(temporary)
            digest = await self._inThread(hashSlice, path, 0, size, whole)
            try:
                await self._bucket.putObject(
                    key, self._session.fileBody(path, 0, size, sent.sender(1)),
                    digest.md5, digest.sha256)
            except BaseException:
                await self._quietly(self._bucket.deleteObject(key), "remove", temporary)
                raise
        if whole.size != size:
            await self._quietly(self._bucket.deleteObject(self._key(temporary)), "remove",
                                temporary)
            raise OSError(f"{path} changed size while it was sent")
        sent.finish(size)
        return PendingUpload(name, temporary, size, whole.hexdigest())

    async def _multipart(self, name: str, path: str, size: int, modifiedNs: int,
                         whole: DigestCounter, sent: _Progress,
                         journal: IUploadJournal | None) -> str:
        """Send C{path} as a multipart upload (resumed if C{journal} allows); its temporary name."""
        resumed = await self._takeUp(journal, name, size, modifiedNs)
        if resumed is not None:
            state, kept = resumed
        else:
            temporary = temporaryName(name)
            uploadId = await self._bucket.createMultipart(self._key(temporary))
            state = UploadState(name, temporary, uploadId, size, modifiedNs,
                                partSizeFor(size, self.partSize))
            kept = {}
            if journal is not None:
                try:
                    await journal.begin(state)
                except BaseException:
                    await self._quietly(self._bucket.abortMultipart(self._key(temporary), uploadId),
                                        "abort", temporary)
                    raise
        key = self._key(state.temporaryName)
        etags: dict[int, str] = {}
        running: list[Deferred[tuple[int, str]]] = []
        slots = _Slots(self.partsInFlight)
        try:
            for part in planParts(size, state.partSize):
                digest = await self._inThread(hashSlice, path, part.offset, part.length, whole)
                done = kept.get(part.number)
                if done is not None and (done.start, done.length, done.sha256) == (
                        part.offset, part.length, digest.sha256):
                    etags[part.number] = done.etag
                    sent.skipped(part.number, part.length)
                    continue
                await slots.acquire()
                if slots.failed:
                    slots.release(None)
                    break
                upload = Deferred.fromCoroutine(
                    self._sendPart(key, state.uploadId, path, part, digest, sent, journal))
                upload.addBoth(slots.release)
                running.append(upload)
            results = await DeferredList(running, consumeErrors=True)
            for ok, value in results:
                if not ok:
                    value.raiseException()
                etags[value[0]] = value[1]
            await self._bucket.completeMultipart(key, state.uploadId, sorted(etags.items()))
        except BaseException as e:
            for upload in running:
                upload.addErrback(lambda _: None)
                upload.cancel()
            if journal is None:
                await self._quietly(self._bucket.abortMultipart(key, state.uploadId), "abort",
                                    state.temporaryName)
            else:
                log.info("{location}: the upload of {name} stopped ({error}); kept to be "
                         "resumed", location=self.location, name=name,
                         error=str(e) or type(e).__name__)
            raise
        return state.temporaryName

    async def _takeUp(self, journal: IUploadJournal | None, name: str, size: int,
                      modifiedNs: int) -> tuple[UploadState, dict[int, UploadedPart]] | None:
        """
        The upload recorded in C{journal} and its parts the server still
        holds, or C{None} (after removing what is left of it) to start over.
        """
        state = journal.state if journal is not None else None
        if state is None:
            return None
        if state.name != name or not isTemporary(state.temporaryName) or \
                finalNameOf(state.temporaryName) != name or state.partSize < 1:
            await self._startOver(state, f"the recorded upload is not one of {name}")
            return None
        if (state.size, state.modifiedNs) != (size, modifiedNs):
            await self._startOver(state, "the local file changed since the upload began "
                                  f"({state.size} -> {size} bytes, or a new modification time)")
            return None
        try:
            listed = await self._bucket.listParts(self._key(state.temporaryName), state.uploadId)
        except BackupRemoteError as e:
            if e.code != DESTINATION_NOT_FOUND:
                raise
            await self._startOver(state, "the server no longer has the upload (aborted or "
                                  "expired)", abort=False)
            return None
        held = {part.number: part for part in listed}
        kept = {}
        for part in state.parts:
            there = held.get(part.number)
            if there is not None and there.size == part.length and \
                    sameETag(there.etag, part.etag):
                kept[part.number] = part
        log.info("{location}: resuming the upload of {name}: {kept} of {count} parts are on "
                 "the server already", location=self.location, name=name, kept=len(kept),
                 count=len(planParts(size, state.partSize)))
        return state, kept

    async def _startOver(self, state: UploadState, why: str, abort: bool = True) -> None:
        """Remove what is left of a recorded upload, saying why it is not resumed."""
        log.info("{location}: not resuming the upload of {name} ({why}): starting over",
                 location=self.location, name=state.name, why=why)
        try:
            key = self._key(checkAnyName(state.temporaryName))
        except BackupRemoteError:
            return
        if abort:
            await self._quietly(self._bucket.abortMultipart(key, state.uploadId), "abort",
                                state.temporaryName)
        # completed before the process ended, and not yet recorded as such
        await self._quietly(self._bucket.deleteObject(key), "remove", state.temporaryName)

    async def _sendPart(self, key: str, uploadId: str, path: str, part: PartPlan,
                        digest: PartDigest, sent: _Progress,
                        journal: IUploadJournal | None) -> tuple[int, str]:
        for attempt in range(1, PART_ATTEMPTS + 1):
            body = self._session.fileBody(path, part.offset, part.length,
                                          sent.sender(part.number))
            try:
                etag = await self._bucket.uploadPart(key, uploadId, part.number, body,
                                                     digest.md5, digest.sha256)
            except BackupRemoteError as e:
                if e.code not in (DESTINATION_UNREACHABLE, TIMEOUT) or attempt == PART_ATTEMPTS:
                    raise
                log.info("{location}: part {number} failed ({error}); retrying",
                         location=self.location, number=part.number, error=str(e))
                await deferLater(self._reactor, self.retryDelay * 2 ** (attempt - 1), lambda: None)
            else:
                if journal is not None:
                    await journal.confirmed(uploadId, UploadedPart(
                        part.number, part.offset, part.length, etag, digest.sha256))
                return part.number, etag
        raise AssertionError("unreachable")

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return Deferred.fromCoroutine(self._readBack(name))

    async def _readBack(self, name: str) -> ReadBack:
        checkAnyName(name)
        digest = DigestCounter()
        await self._bucket.getObject(self._key(name), digest.update)
        return digest.readBack()

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return Deferred.fromCoroutine(self._complete(upload))

    async def _complete(self, upload: PendingUpload) -> None:
        checkName(upload.name)
        source = self._key(checkAnyName(upload.temporaryName))
        key = self._key(upload.name)
        head = await self._bucket.head(source)
        if head is None:
            raise BackupRemoteError(
                DESTINATION_NOT_FOUND,
                f"{self.location}: the temporary copy {upload.temporaryName} is gone")
        held = int(head.header("content-length", "-1") or -1)
        if held != upload.size:
            raise BackupRemoteError(
                DESTINATION_VERIFY_FAILED,
                f"{self.location}: {upload.temporaryName} holds {held} bytes, not "
                f"{upload.size}")
        etag = head.header("etag")
        metadata = {SHA256_METADATA: upload.sha256}
        if upload.size <= self.copyLimit:
            await self._bucket.copyObject(source, key, metadata, etag)
        else:
            await self._copyInParts(source, key, upload.size, metadata, etag)
        await self._bucket.deleteObject(source)

    async def _copyInParts(self, source: str, key: str, size: int,
                           metadata: dict[str, str], etag: str | None) -> None:
        uploadId = await self._bucket.createMultipart(key, metadata)
        try:
            parts = []
            for part in planParts(size, partSizeFor(size, 512 * MiB)):
                parts.append((part.number, await self._bucket.uploadPartCopy(
                    key, uploadId, part.number, source, part.offset,
                    part.offset + part.length - 1, etag)))
            await self._bucket.completeMultipart(key, uploadId, parts)
        except BaseException:
            await self._quietly(self._bucket.abortMultipart(key, uploadId), "abort", key)
            raise

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return Deferred.fromCoroutine(self._listFiles())

    async def _listFiles(self) -> list[RemoteFile]:
        found = []
        for item in await self._bucket.listObjects(self.url.prefix):
            name = item.key[len(self.url.prefix):]
            if isListable(name):
                found.append(RemoteFile(name, item.size, item.modified, isTemporary(name)))
        return found

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._delete(name))

    async def _delete(self, name: str) -> None:
        checkAnyName(name)
        key = self._key(name)
        if isTemporary(name):
            for upload in await self._bucket.listUploads(key):
                if upload.key == key:
                    await self._bucket.abortMultipart(key, upload.uploadId)
        await self._bucket.deleteObject(key)

    def close(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._session.close())

    # Stale uploads

    async def abortStaleUploads(self, keep: Collection[str] = ()) -> int:
        """
        Abort our multipart uploads (to temporary keys under the prefix)
        started more than C{staleAfter} seconds ago, but those in C{keep} or
        recorded in our store to be resumed; how many were aborted.
        """
        self._lastStaleCheck = self._reactor.seconds()
        kept = set(keep)
        if self._recorded is not None:
            kept.update(await self._recorded())
        aborted = 0
        for upload in await self._bucket.listUploads(self.url.prefix):
            name = upload.key[len(self.url.prefix):]
            if not isTemporary(name) or upload.initiated is None or upload.uploadId in kept:
                continue
            if self._reactor.seconds() - upload.initiated.timestamp() >= self.staleAfter:
                await self._bucket.abortMultipart(upload.key, upload.uploadId)
                log.info("{location}: aborted the stale upload {name}",
                         location=self.location, name=name)
                aborted += 1
        return aborted

    async def _maybeAbortStale(self, keep: Collection[str] = ()) -> None:
        last = self._lastStaleCheck
        if last is not None and self._reactor.seconds() - last < STALE_CHECK_INTERVAL:
            return
        await self._quietly(self.abortStaleUploads(keep), "abort stale uploads under",
                            self.url.prefix or "/")

    async def _quietly(self, work: Any, what: str, name: str) -> None:
        try:
            await work
        except (BackupRemoteError, CancelledError) as e:
            log.warn("{location}: could not {what} {name}: {error}",
                     location=self.location, what=what, name=name, error=str(e))


class _Slots:
    """At most C{count} parts in flight; once one failed, no new one starts."""

    def __init__(self, count: int) -> None:
        self._semaphore = DeferredSemaphore(count)
        self.failed = False

    def acquire(self) -> Deferred[Any]:
        return self._semaphore.acquire()

    def release(self, result: Any) -> Any:
        if isinstance(result, Failure):
            self.failed = True
        self._semaphore.release()
        return result
