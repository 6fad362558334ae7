"""The local-folder destination: the contract on the real file system, and its own faults."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import threading
from collections.abc import Callable

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.destinations import putVerified
from backupremote.client.destinations.local import (
    COPIERS,
    LocalFolderDestination,
    copyFileRange,
    readWrite,
    sendFile,
)
from backupremote.client.destinations.names import isTemporary
from backupremote.protocol.errors import (
    DESTINATION_FULL,
    DESTINATION_REFUSED,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from tests.client.destinations.contract import DestinationFixture, makeDestinationTests

Copier = Callable[[int, int, int, int], int]


def filesUnder(root: FilePath) -> set[str]:
    return {"/".join(path.segmentsFrom(root)) for path in root.walk()
            if path.isfile() or path.islink()}


def corruptFile(path: FilePath) -> None:
    data = path.getContent()
    with open(path.path, "r+b") as handle:
        handle.write(bytes([data[0] ^ 0xFF]) if data else b"\0")


async def localFixture(case: TestCase) -> DestinationFixture:
    root = FilePath(case.mktemp())
    root.makedirs()
    destination = LocalFolderDestination(reactor, root)
    return DestinationFixture(
        destination,
        corrupt=lambda name: corruptFile(root.preauthChild(name)),
        serverNames=lambda: filesUnder(root),
    )


class LocalFolderContractTests(makeDestinationTests(localFixture)):  # type: ignore[misc]
    """The local folder passes the contract."""


class LocalFolderTests(TestCase):
    def setUp(self) -> None:
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.source = FilePath(self.mktemp())
        self.source.setContent(os.urandom(300_000))
        self.destination = LocalFolderDestination(reactor, self.root)

    async def test_modes(self) -> None:
        """Delivered files are 0600, new date folders 0700."""
        await putVerified(self.destination, self.source, "2026-11-03/a.zst")
        self.assertEqual(self.root.child("2026-11-03").getPermissions().shorthand(), "rwx------")
        self.assertEqual(self.root.descendant(["2026-11-03", "a.zst"]).getPermissions().shorthand(),
                         "rw-------")

    async def test_missingRoot(self) -> None:
        """A root that does not exist is refused, never created: it may be an unmounted share."""
        destination = LocalFolderDestination(reactor, self.root.child("not-mounted"))
        for attempt in (destination.testConnection(), destination.put(self.source, "a.zst"),
                        destination.listFiles()):
            with self.assertRaises(BackupRemoteError) as caught:
                await attempt
            self.assertEqual(caught.exception.code, DESTINATION_REFUSED)
        self.assertFalse(self.root.child("not-mounted").exists())

    async def test_readOnly(self) -> None:
        if os.geteuid() == 0:
            # root ignores permissions: a read-only bind would be needed
            self.root.chmod(0o500)
            self.addCleanup(self.root.chmod, 0o700)
            self.patch(os, "open", _refusing(os.open, self.root.path))
        else:
            self.root.chmod(0o500)
            self.addCleanup(self.root.chmod, 0o700)
        with self.assertRaises(BackupRemoteError) as caught:
            await self.destination.testConnection()
        self.assertEqual(caught.exception.code, DESTINATION_REFUSED)

    async def test_diskFull(self) -> None:
        """A full disk (a 1 MiB tmpfs): DESTINATION_FULL, no temporary file left, source untouched."""
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                        self.root.path], check=True)
        self.addCleanup(subprocess.run, ["umount", self.root.path], check=True)
        self.source.setContent(os.urandom(3 * 1024 * 1024))
        before = self.source.getContent()
        with self.assertRaises(BackupRemoteError) as caught:
            await putVerified(self.destination, self.source, "full.zst")
        self.assertEqual(caught.exception.code, DESTINATION_FULL)
        self.assertEqual(filesUnder(self.root), set())
        self.assertEqual(self.source.getContent(), before)

    async def test_diskFullInTheKernelCopy(self) -> None:
        """ENOSPC from a kernel copier is DESTINATION_FULL, not a reason to try the next copier."""
        calls: list[str] = []
        destination = LocalFolderDestination(reactor, self.root, (
            _fullAfter(copyFileRange, 100_000, calls), _recording(readWrite, "readWrite", calls)))
        with self.assertRaises(BackupRemoteError) as caught:
            await putVerified(destination, self.source, "full.zst")
        self.assertEqual(caught.exception.code, DESTINATION_FULL)
        self.assertNotIn("readWrite", calls)
        self.assertEqual(filesUnder(self.root), set())

    async def test_fallback(self) -> None:
        """
        A copier that cannot copy these files (an unsupported errno, or
        nothing from a source with bytes left) hands over to the next at the
        same offset; the delivered file is the source.
        """
        calls: list[str] = []
        destination = LocalFolderDestination(reactor, self.root, (
            _unsupported(errno.EXDEV, calls),
            _recording(lambda *args: 0, "empty", calls),
            _recording(readWrite, "readWrite", calls)))
        stored = await putVerified(destination, self.source, "2026-11-03/a.zst")
        self.assertEqual(calls[:2], ["EXDEV", "empty"])
        self.assertEqual(set(calls[2:]), {"readWrite"})
        self.assertEqual(self.root.descendant(["2026-11-03", "a.zst"]).getContent(),
                         self.source.getContent())
        self.assertEqual(stored.sha256, hashlib.sha256(self.source.getContent()).hexdigest())

    async def test_fallbackMidway(self) -> None:
        """A copier that stops being able to copy midway hands over where it stopped."""
        calls: list[str] = []
        first = _unsupportedAfter(readWrite, 100_000, errno.EINVAL, calls)
        destination = LocalFolderDestination(reactor, self.root, (
            first, _recording(sendFile, "sendFile", calls)))
        await putVerified(destination, self.source, "m.zst")
        self.assertIn("EINVAL", calls)
        self.assertIn("sendFile", calls)
        self.assertEqual(self.root.child("m.zst").getContent(), self.source.getContent())

    async def test_errorOfTheLastCopier(self) -> None:
        """The last copier has no fallback: its error is the put's."""
        destination = LocalFolderDestination(reactor, self.root, (_unsupported(errno.EIO, []),))
        with self.assertRaises(BackupRemoteError) as caught:
            await destination.put(self.source, "e.zst")
        self.assertEqual(caught.exception.code, DESTINATION_REFUSED)
        self.assertEqual(filesUnder(self.root), set())

    async def test_defaultCopiers(self) -> None:
        """Each default copier alone delivers the file (on this kernel: none is unsupported)."""
        for copier in COPIERS:
            destination = LocalFolderDestination(reactor, self.root, (copier,))
            await putVerified(destination, self.source, f"{copier.__name__}.zst")
            self.assertEqual(self.root.child(f"{copier.__name__}.zst").getContent(),
                             self.source.getContent())

    async def test_cancelMidCopy(self) -> None:
        """
        Cancelling a put while its copy runs stops it between blocks and
        removes the temporary file (L{close} waits for that cleanup).
        """
        started: Deferred[None] = Deferred()
        release = threading.Event()
        self.addCleanup(release.set)

        def blocking(reading: int, writing: int, offset: int, count: int) -> int:
            copied = readWrite(reading, writing, offset, min(count, 1000))
            if offset == 0:
                reactor.callFromThread(started.callback, None)
                release.wait(60)
            return copied

        destination = LocalFolderDestination(reactor, self.root, (blocking,))
        put = destination.put(self.source, "c.zst")
        await started
        [temporary] = filesUnder(self.root)
        self.assertTrue(isTemporary(temporary))
        put.cancel()
        release.set()
        with self.assertRaises(CancelledError):
            await put
        await destination.close()
        self.assertEqual(filesUnder(self.root), set())

    async def test_sourceChangedMidCopy(self) -> None:
        """
        A local file whose copy and SHA-256 disagree on its size (it changed
        meanwhile) is refused and its temporary file removed.
        """
        extra: list[bytes] = []

        def longer(reading: int, writing: int, offset: int, count: int) -> int:
            copied = readWrite(reading, writing, offset, count)
            if not copied and not extra:
                extra.append(b"x")
                os.write(writing, b"x")
                return 1
            return copied

        destination = LocalFolderDestination(reactor, self.root, (longer,))
        with self.assertRaises(BackupRemoteError) as caught:
            await destination.put(self.source, "s.zst")
        self.assertEqual(caught.exception.code, VERIFICATION_FAILED)
        self.assertEqual(filesUnder(self.root), set())

    async def test_foreignFilesIgnored(self) -> None:
        """The listing leaves out what could not be ours: deep folders, links, odd names."""
        self.root.child("notes .txt").setContent(b"x")
        self.root.child(".hidden").setContent(b"x")
        self.root.descendant(["a", "b"]).makedirs()
        self.root.descendant(["a", "b", "deep.zst"]).setContent(b"x")
        self.source.linkTo(self.root.child("link.zst"))
        self.root.child("kept.zst").setContent(b"xy")
        self.assertEqual([(f.name, f.size) for f in await self.destination.listFiles()],
                         [("kept.zst", 2)])


def _refusing(realOpen, folder):  # type: ignore[no-untyped-def]
    def open_(path, flags, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(path).startswith(folder + "/") and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return realOpen(path, flags, *args, **kwargs)
    return open_


def _recording(copier: Copier, name: str, calls: list[str]) -> Copier:
    def copy(reading: int, writing: int, offset: int, count: int) -> int:
        calls.append(name)
        return copier(reading, writing, offset, count)
    return copy


def _unsupported(code: int, calls: list[str]) -> Copier:
    """A copier that fails at once with C{code}."""
    def copy(reading: int, writing: int, offset: int, count: int) -> int:
        calls.append(errno.errorcode[code])
        raise OSError(code, os.strerror(code))
    return copy


def _unsupportedAfter(copier: Copier, limit: int, code: int, calls: list[str]) -> Copier:
    """C{copier} until C{limit} bytes, then failing with C{code}."""
    def copy(reading: int, writing: int, offset: int, count: int) -> int:
        if offset >= limit:
            calls.append(errno.errorcode[code])
            raise OSError(code, os.strerror(code))
        return copier(reading, writing, offset, min(count, limit - offset))
    return copy


def _fullAfter(copier: Copier, limit: int, calls: list[str]) -> Copier:
    """C{copier} until C{limit} bytes, then failing with ENOSPC."""
    return _unsupportedAfter(copier, limit, errno.ENOSPC, calls)
