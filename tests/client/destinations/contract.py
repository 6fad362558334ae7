"""
The ONE contract test suite of L{IDestination}, run on every implementation
and on the twin (Flocker's C{make_..._tests} pattern).

An implementation's test module instantiates it with a fixture that makes a
fresh, empty destination root on its (real) server::

    async def sftpFixture(case: TestCase) -> DestinationFixture:
        server = await sharedSSHServer(case)          # once per module
        root = server.newFolder()
        destination = SFTPDestination(...)
        case.addCleanup(destination.close)
        return DestinationFixture(destination, corrupt=..., serverNames=...)

    class SFTPContractTests(makeDestinationTests(sftpFixture)):
        pass

C{corrupt} and C{serverNames} look at the server's side directly (its folder
on disk, its bucket), not through the destination under test, so the suite
sees what really sits under each name. Fault tests that need a particular
server (wrong credentials, host key or certificate mismatch, a server
stopped mid-upload) live in each implementation's module.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from backupremote.client.destinations import (
    IDestination,
    KnownDigest,
    PendingUpload,
    RemoteFile,
    UploadedPart,
    UploadState,
    isTemporary,
    putVerified,
    temporaryName,
)
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_NOT_FOUND,
    DESTINATION_VERIFY_FAILED,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.testing import JournalStopped, MemoryUploadJournal

#: More than a few chunks, windows and buffers of any implementation, and
#: not a multiple of any power of two.
LARGE_SIZE = 3 * 1024 * 1024 + 4093


@frozen
class DestinationFixture:
    """
    A destination under test, with an empty root, and two views of its
    server's side.

    @ivar corrupt: C{corrupt(name)} changes the content of the stored file
        C{name} (same size where possible), bypassing the destination.
    @ivar serverNames: C{serverNames()} the names of every file under the
        root (and its folders), as the server holds them.
    """

    destination: Any
    corrupt: Callable[[str], Any]
    serverNames: Callable[[], Any]


Fixture = Callable[[TestCase], Awaitable[DestinationFixture]]


async def _maybe(result: Any) -> Any:
    if isinstance(result, Deferred) or inspect.isawaitable(result):
        return await result
    return result


def _content(size: int, seed: bytes) -> bytes:
    """C{size} bytes, deterministic per seed, not compressible."""
    blocks = []
    counter = 0
    while sum(len(b) for b in blocks) < size:
        blocks.append(hashlib.sha512(seed + counter.to_bytes(8, "big")).digest() * 64)
        counter += 1
    return b"".join(blocks)[:size]


def makeDestinationTests(fixture: Fixture) -> type[TestCase]:
    """
    A L{TestCase} of the destination contract, each test on a fresh
    destination from C{fixture}. Subclass it in a test module to run it.
    """

    class DestinationContractTests(TestCase):
        timeout = 120

        async def setUp(self) -> None:
            self.fixture = await fixture(self)
            self.destination = self.fixture.destination

        # Helpers

        def localFile(self, size: int, seed: bytes = b"x") -> FilePath:
            path = FilePath(self.mktemp())
            path.setContent(_content(size, seed))
            return path

        async def serverNames(self) -> set[str]:
            return set(await _maybe(self.fixture.serverNames()))

        async def listing(self) -> dict[str, RemoteFile]:
            return {f.name: f for f in await self.destination.listFiles()}

        async def assertFails(self, code: str, awaitable: Any) -> BackupRemoteError:
            try:
                await _maybe(awaitable)
            except BackupRemoteError as e:
                self.assertEqual(e.code, code, str(e))
                return e
            self.fail(f"no {code} error")

        async def deliver(self, source: FilePath, name: str) -> None:
            stored = await putVerified(self.destination, source, name)
            data = source.getContent()
            self.assertEqual((stored.name, stored.size, stored.sha256),
                             (name, len(data), hashlib.sha256(data).hexdigest()))

        # The contract

        def test_interface(self) -> None:
            self.assertTrue(verifyObject(IDestination, self.destination))
            self.assertIsInstance(self.destination.type, str)
            self.assertIsInstance(self.destination.location, str)

        async def test_testConnection(self) -> None:
            self.assertIsNone(await self.destination.testConnection())
            self.assertEqual(await self.serverNames(), set(), "the probe file is left")

        async def test_emptyListing(self) -> None:
            self.assertEqual(await self.destination.listFiles(), [])

        async def test_putIsTemporary(self) -> None:
            """put leaves the bytes under a temporary name in the same folder, not the final one."""
            source = self.localFile(100_000)
            upload = await self.destination.put(source, "a.bin")
            self.assertIsInstance(upload, PendingUpload)
            data = source.getContent()
            self.assertEqual((upload.name, upload.size, upload.sha256),
                             ("a.bin", len(data), hashlib.sha256(data).hexdigest()))
            self.assertTrue(isTemporary(upload.temporaryName))
            self.assertNotIn("/", upload.temporaryName)
            self.assertEqual(await self.serverNames(), {upload.temporaryName})
            listing = await self.listing()
            self.assertEqual(list(listing), [upload.temporaryName])
            self.assertTrue(listing[upload.temporaryName].temporary)

        async def test_readBackTemporary(self) -> None:
            source = self.localFile(LARGE_SIZE)
            upload = await self.destination.put(source, "large.bin")
            found = await self.destination.readBack(upload.temporaryName)
            self.assertEqual((found.size, found.sha256), (upload.size, upload.sha256))
            self.assertIsInstance(found.method, str)

        async def test_complete(self) -> None:
            """complete moves the temporary file under its final name."""
            source = self.localFile(LARGE_SIZE, b"complete")
            upload = await self.destination.put(source, "db.sql.zst")
            await self.destination.complete(upload)
            self.assertEqual(await self.serverNames(), {"db.sql.zst"})
            listing = await self.listing()
            self.assertEqual(list(listing), ["db.sql.zst"])
            self.assertEqual(listing["db.sql.zst"].size, LARGE_SIZE)
            self.assertFalse(listing["db.sql.zst"].temporary)
            found = await self.destination.readBack("db.sql.zst")
            self.assertEqual((found.size, found.sha256), (upload.size, upload.sha256))

        async def test_completeReplaces(self) -> None:
            """A second delivery under the same name replaces the first."""
            await self.deliver(self.localFile(5000, b"one"), "same.bin")
            second = self.localFile(7000, b"two")
            await self.deliver(second, "same.bin")
            found = await self.destination.readBack("same.bin")
            self.assertEqual(found.sha256, hashlib.sha256(second.getContent()).hexdigest())
            self.assertEqual(await self.serverNames(), {"same.bin"})

        async def test_putVerified(self) -> None:
            source = self.localFile(LARGE_SIZE, b"verified")
            before = source.getContent()
            await self.deliver(source, "run.zst")
            self.assertEqual(await self.serverNames(), {"run.zst"})
            self.assertEqual(source.getContent(), before)

        async def test_emptyFile(self) -> None:
            await self.deliver(self.localFile(0), "empty.bin")
            listing = await self.listing()
            self.assertEqual(listing["empty.bin"].size, 0)

        async def test_folder(self) -> None:
            """A FOLDER/FILE name creates the folder, and the listing sees into it."""
            await self.deliver(self.localFile(10_000, b"a"), "2026-11-03/a.zst")
            await self.deliver(self.localFile(20_000, b"b"), "2026-11-03/b.zst")
            await self.deliver(self.localFile(30_000, b"c"), "2026-11-04/c.zst")
            await self.deliver(self.localFile(40_000, b"d"), "top.zst")
            self.assertEqual(
                await self.serverNames(),
                {"2026-11-03/a.zst", "2026-11-03/b.zst", "2026-11-04/c.zst", "top.zst"})
            listing = await self.listing()
            self.assertEqual({name: f.size for name, f in listing.items()}, {
                "2026-11-03/a.zst": 10_000, "2026-11-03/b.zst": 20_000,
                "2026-11-04/c.zst": 30_000, "top.zst": 40_000})
            self.assertFalse(any(f.temporary for f in listing.values()))
            upload = await self.destination.put(self.localFile(10), "2026-11-05/e.zst")
            self.assertTrue(upload.temporaryName.startswith("2026-11-05/."))
            self.assertTrue((await self.listing())[upload.temporaryName].temporary)

        async def test_modified(self) -> None:
            """A modification time, where reported, is aware."""
            await self.deliver(self.localFile(10), "m.bin")
            modified = (await self.listing())["m.bin"].modified
            if modified is not None:
                self.assertIsNotNone(modified.tzinfo)

        async def test_progress(self) -> None:
            seen: list[int] = []
            await self.destination.put(self.localFile(LARGE_SIZE), "p.bin", seen.append)
            self.assertTrue(seen)
            self.assertEqual(seen, sorted(seen))
            self.assertEqual(seen[-1], LARGE_SIZE)

        async def test_delete(self) -> None:
            await self.deliver(self.localFile(10), "gone.bin")
            await self.deliver(self.localFile(10), "2026-01-01/gone.bin")
            await self.destination.delete("gone.bin")
            await self.destination.delete("2026-01-01/gone.bin")
            self.assertEqual(await self.serverNames(), set())
            self.assertEqual(await self.destination.listFiles(), [])

        async def test_deleteTemporary(self) -> None:
            upload = await self.destination.put(self.localFile(10), "t.bin")
            await self.destination.delete(upload.temporaryName)
            self.assertEqual(await self.serverNames(), set())

        async def test_deleteAbsent(self) -> None:
            """Deleting what is not there succeeds: a retried delete is harmless."""
            self.assertIsNone(await self.destination.delete("never.bin"))
            self.assertIsNone(await self.destination.delete("2020-01-01/never.bin"))

        async def test_readBackAbsent(self) -> None:
            await self.assertFails(DESTINATION_NOT_FOUND, self.destination.readBack("never.bin"))

        async def test_completeAbsent(self) -> None:
            upload = await self.destination.put(self.localFile(10), "x.bin")
            await self.destination.delete(upload.temporaryName)
            await self.assertFails(DESTINATION_NOT_FOUND, self.destination.complete(upload))
            self.assertEqual(await self.serverNames(), set())

        async def test_badNames(self) -> None:
            source = self.localFile(10)
            for name in ("", "../x", "/abs", "a/b/c", ".hidden", "a/../b", "sp ace", "a//b"):
                await self.assertFails(CONFIG_INVALID, self.destination.put(source, name))
                await self.assertFails(CONFIG_INVALID, self.destination.readBack(name))
                await self.assertFails(CONFIG_INVALID, self.destination.delete(name))
            self.assertEqual(await self.serverNames(), set())

        async def test_corruptedReadBack(self) -> None:
            """A read-back of a corrupted copy shows it."""
            upload = await self.destination.put(self.localFile(50_000), "c.bin")
            await _maybe(self.fixture.corrupt(upload.temporaryName))
            found = await self.destination.readBack(upload.temporaryName)
            self.assertNotEqual(found.sha256, upload.sha256)

        async def test_corruptedNeverFinal(self) -> None:
            """
            putVerified on a destination that corrupts the copy fails with
            DESTINATION_VERIFY_FAILED, leaves nothing (not under the final
            name, not the temporary file), and the local file is untouched.
            """
            source = self.localFile(LARGE_SIZE, b"corrupt")
            before = source.getContent()
            corrupting = _Corrupting(self.destination, self.fixture.corrupt)
            await self.assertFails(DESTINATION_VERIFY_FAILED,
                                   putVerified(corrupting, source, "2026-02-02/bad.zst"))
            self.assertEqual(await self.serverNames(), set())
            self.assertEqual(source.getContent(), before)

        # A put handed the artifact's size and SHA-256 (KnownDigest)

        async def test_putKnown(self) -> None:
            """
            A put handed a known digest carries it (and the bytes it sent)
            in its upload, and the copy has those bytes: the read-back and
            putVerified check the copy against it.
            """
            source = self.localFile(LARGE_SIZE, b"known")
            data = source.getContent()
            known = KnownDigest(len(data), hashlib.sha256(data).hexdigest().upper())
            upload = await self.destination.put(source, "k.bin", known=known)
            self.assertEqual((upload.size, upload.sha256), (known.size, known.sha256.lower()))
            found = await self.destination.readBack(upload.temporaryName)
            self.assertEqual((found.size, found.sha256), (upload.size, upload.sha256))
            await self.destination.delete(upload.temporaryName)
            stored = await putVerified(self.destination, source, "2026-02-02/k.bin", known)
            self.assertEqual((stored.size, stored.sha256), (known.size, known.sha256.lower()))
            self.assertEqual(await self.serverNames(), {"2026-02-02/k.bin"})

        async def test_putKnownWrongHash(self) -> None:
            """
            A known SHA-256 the local bytes do not have fails verification
            (at the read-back, the put not hashing them) and leaves no file
            under the final name, nor the temporary one; the local file is
            untouched.
            """
            source = self.localFile(LARGE_SIZE, b"not the artifact")
            before = source.getContent()
            upload = await self.destination.put(
                source, "w.bin", known=KnownDigest(LARGE_SIZE, "0" * 64))
            self.assertEqual(upload.sha256, "0" * 64)
            await self.destination.delete(upload.temporaryName)
            error = await self.assertFails(
                DESTINATION_VERIFY_FAILED,
                putVerified(self.destination, source, "2026-02-02/wrong.bin",
                            KnownDigest(LARGE_SIZE, "0" * 64)))
            self.assertIn("0" * 64, str(error))
            self.assertEqual(await self.serverNames(), set())
            self.assertEqual(await self.listing(), {})
            self.assertEqual(source.getContent(), before)

        async def test_putKnownWrongSize(self) -> None:
            """A local file of another size than the known one is never completed."""
            source = self.localFile(1000)
            await self.assertFails(
                VERIFICATION_FAILED,
                putVerified(self.destination, source, "wrong.bin",
                            KnownDigest(1001, hashlib.sha256(source.getContent()).hexdigest())))
            self.assertEqual(await self.serverNames(), set())

        async def test_missingLocalFile(self) -> None:
            with self.assertRaises(Exception):
                await self.destination.put(FilePath(self.mktemp()), "no.bin")
            self.assertEqual(await self.serverNames(), set())

        # Resuming an interrupted upload (IUploadJournal)

        async def interrupted(self, source: FilePath, name: str) -> MemoryUploadJournal:
            """
            A journal of a put of C{source} that stopped just after the
            server confirmed its first part, whichever it was (a crash): its upload kept for
            a later put. A destination that cannot resume records nothing
            and just delivers (its temporary file is removed here).
            """
            journal = MemoryUploadJournal(failAfter=1)
            try:
                upload = await self.destination.put(source, name, None, journal)
            except JournalStopped:
                self.assertIsNotNone(journal.state)
                assert journal.state is not None
                self.assertEqual(journal.state.name, name)
                self.assertTrue(isTemporary(journal.state.temporaryName))
                # one part confirmed; which one is the server's order (parts go in parallel)
                self.assertEqual(len(journal.state.parts), 1)
                self.assertGreaterEqual(journal.state.parts[0].number, 1)
            else:
                self.assertIsNone(journal.state, "a journal was recorded, but the put went on")
                await self.destination.delete(upload.temporaryName)
            journal.failAfter = None
            return journal

        async def test_resume(self) -> None:
            """
            A put with the journal of an interrupted one takes its upload up
            (no new upload begun) and sends what is the local file, no
            matter what the server held; completes and reads back as usual.
            """
            source = self.localFile(LARGE_SIZE, b"resume")
            journal = await self.interrupted(source, "2026-04-04/r.zst")
            before = journal.state
            upload = await self.destination.put(source, "2026-04-04/r.zst", None, journal)
            data = source.getContent()
            self.assertEqual((upload.size, upload.sha256),
                             (len(data), hashlib.sha256(data).hexdigest()))
            if before is not None:
                self.assertEqual(journal.begins, 1, "the upload was begun anew")
                self.assertEqual(upload.temporaryName, before.temporaryName)
            found = await self.destination.readBack(upload.temporaryName)
            self.assertEqual((found.size, found.sha256), (upload.size, upload.sha256))
            await self.destination.complete(upload)
            self.assertEqual(await self.serverNames(), {"2026-04-04/r.zst"})

        async def test_resumeGone(self) -> None:
            """
            delete(temporary name) drops an unfinished upload; a put with its
            journal then starts over cleanly and delivers the file.
            """
            source = self.localFile(LARGE_SIZE, b"gone")
            journal = await self.interrupted(source, "g.zst")
            before = journal.state
            if before is not None:
                await self.destination.delete(before.temporaryName)
            self.assertEqual(await self.serverNames(), set())
            await self.assertResumedPutDelivers(source, "g.zst", journal)
            if before is not None:
                assert journal.state is not None
                self.assertEqual(journal.begins, 2)
                self.assertNotEqual(journal.state.uploadId, before.uploadId)

        async def test_resumeChangedFile(self) -> None:
            """
            The local file changed since the interrupted put: the next put
            sends the file as it is now, nothing of the old one.
            """
            source = self.localFile(LARGE_SIZE, b"before")
            journal = await self.interrupted(source, "c.zst")
            before = journal.state
            source.setContent(_content(LARGE_SIZE, b"after"))
            stat = os.stat(source.path)
            os.utime(source.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
            await self.assertResumedPutDelivers(source, "c.zst", journal)
            if before is not None:
                self.assertEqual(journal.begins, 2, "the upload was not begun anew")

        async def test_resumeUnknownUpload(self) -> None:
            """A journal naming an upload the server never had: the put starts over."""
            source = self.localFile(LARGE_SIZE, b"unknown")
            stat = os.stat(source.path)
            journal = MemoryUploadJournal(UploadState(
                "u.zst", temporaryName("u.zst"), "no-such-upload", stat.st_size,
                stat.st_mtime_ns, 1 << 20,
                (UploadedPart(1, 0, 1 << 20, '"00"', "0" * 64),)))
            await self.assertResumedPutDelivers(source, "u.zst", journal)

        async def assertResumedPutDelivers(self, source: FilePath, name: str,
                                           journal: MemoryUploadJournal) -> None:
            upload = await self.destination.put(source, name, None, journal)
            data = source.getContent()
            self.assertEqual((upload.size, upload.sha256),
                             (len(data), hashlib.sha256(data).hexdigest()))
            found = await self.destination.readBack(upload.temporaryName)
            self.assertEqual((found.size, found.sha256), (upload.size, upload.sha256))
            await self.destination.complete(upload)
            self.assertEqual(await self.serverNames(), {name})
            found = await self.destination.readBack(name)
            self.assertEqual(found.sha256, hashlib.sha256(data).hexdigest())

        async def test_closeAndReuse(self) -> None:
            """close is idempotent, and the destination reconnects after it."""
            await self.destination.close()
            await self.destination.close()
            await self.deliver(self.localFile(10), "after.bin")

    return DestinationContractTests


class _Corrupting:
    """An L{IDestination} whose C{put} corrupts the copy right after it is made."""

    def __init__(self, destination: Any, corrupt: Callable[[str], Any]) -> None:
        self._destination = destination
        self._corrupt = corrupt
        self.type = destination.type
        self.location = destination.location

    async def put(self, *args: Any, **kwargs: Any) -> PendingUpload:
        upload = await self._destination.put(*args, **kwargs)
        await _maybe(self._corrupt(upload.temporaryName))
        return upload

    def __getattr__(self, name: str) -> Any:
        return getattr(self._destination, name)


__all__ = ["DestinationFixture", "LARGE_SIZE", "makeDestinationTests"]
