"""
An SFTP server as a destination (C{twisted.conch}).

One SSH connection is kept open between operations and opened again when
it was lost. Uploads keep a window of writes in flight (32 of 64 KiB by
default, like OpenSSH's own client), reading the local file as the window
frees up, so memory stays bounded whatever the file's size; read-backs
pipeline their reads the same way and hash in order. A file is written
under a temporary name (0600), fsynced where the server offers
C{fsync@openssh.com}, and renamed with C{posix-rename@openssh.com} (atomic,
replacing) where offered, else by remove and rename.

The host key is checked by L{HostKeyPolicy} before anything is sent, and
the login uses L{SSHCredentials}.
"""

from __future__ import annotations

import secrets
import stat
import struct
from datetime import datetime, timezone
from typing import Any

from twisted.conch.ssh import filetransfer
from twisted.conch.ssh.common import NS
from twisted.internet import error as netError
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.connecting import OneAttempt
from backupremote.client.destinations.interface import (
    DigestCounter,
    IDestination,
    IUploadJournal,
    KnownDigest,
    PendingUpload,
    Progress,
    ReadBack,
    RemoteFile,
)
from backupremote.client.destinations.names import (
    PROBE_PREFIX,
    checkAnyName,
    checkName,
    isFolderName,
    isListable,
    isTemporary,
    splitName,
    temporaryName,
)
from backupremote.client.destinations.verified import openSource
from backupremote.client.destinations.sshconnect import SFTPClient, SSHSession
from backupremote.client.destinations.sshkeys import HostKeyPolicy, SSHCredentials
from backupremote.client.destinations.urls import SFTPURL
from backupremote.protocol.errors import (
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor

log = Logger()

CHUNK_SIZE = 64 * 1024
WINDOW = 32
TIMEOUT = 30.0

_POSIX_RENAME = b"posix-rename@openssh.com"
_FSYNC = b"fsync@openssh.com"
_STATVFS = b"statvfs@openssh.com"


@implementer(IDestination)
class SFTPDestination:
    """
    The folder C{url.path} on the SSH server C{url.host}:C{url.port}, as
    C{url.user}.
    """

    type = "sftp"

    def __init__(self, reactor: IConnectingReactor, url: SFTPURL, credentials: SSHCredentials,
                 hostKeys: HostKeyPolicy, timeout: float = TIMEOUT, window: int = WINDOW,
                 chunkSize: int = CHUNK_SIZE) -> None:
        self._reactor = reactor
        self.url = url
        self._credentials = credentials
        self._hostKeys = hostKeys
        self._timeout = timeout
        self._window = window
        self._chunkSize = chunkSize
        self.location = url.url
        self._session: SSHSession | None = None
        self._connecting: OneAttempt[SFTPClient] = OneAttempt()

    # The connection

    @property
    def negotiated(self) -> dict[str, str]:
        """The cipher and MAC of the live connection each way; empty without one."""
        return self._session.negotiated if self._session is not None else {}

    async def _client(self) -> SFTPClient:
        session = self._session
        if session is not None and session.alive and session.client is not None:
            return session.client
        return await self._connecting.join(self._connect)

    def _connect(self) -> Deferred[SFTPClient]:
        session = self._session = SSHSession(
            self._reactor, self.url.host, self.url.port, self.url.user,
            self._credentials, self._hostKeys, self._timeout)
        return session.connect()

    def _error(self, reason: BaseException, doing: str) -> BaseException:
        """The registry error for a failure while C{doing}."""
        if isinstance(reason, BackupRemoteError):
            return reason
        if isinstance(reason, (netError.ConnectionLost, netError.ConnectionDone,
                               netError.ConnectionAborted)):
            session = self._session
            if session is not None and session.error is not None:
                return session.error
            return BackupRemoteError(
                DESTINATION_UNREACHABLE,
                f"{self.location}: the connection was lost while {doing}")
        if isinstance(reason, filetransfer.SFTPError):
            message = reason.message or "no reason given"
            if reason.code == filetransfer.FX_NO_SUCH_FILE:
                return BackupRemoteError(DESTINATION_NOT_FOUND,
                                         f"{self.location}: {doing}: no such file")
            if reason.code == filetransfer.FX_PERMISSION_DENIED:
                return BackupRemoteError(DESTINATION_REFUSED,
                                         f"{self.location}: {doing}: permission denied")
            return BackupRemoteError(DESTINATION_REFUSED,
                                     f"{self.location}: {doing}: the server said {message!r}")
        if isinstance(reason, NotImplementedError):
            return BackupRemoteError(DESTINATION_REFUSED,
                                     f"{self.location}: {doing}: the server does not support it")
        return reason

    async def _run(self, doing: str, operation: Any, *args: Any) -> Any:
        try:
            client = await self._client()
            return await operation(client, *args)
        except Exception as e:
            raise self._error(e, doing) from None

    def _path(self, name: str | None) -> str:
        root = self.url.path
        if not name:
            return root or "."
        if not root:
            return name
        return ("" if root == "/" else root) + "/" + name

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._run("testing the folder", self._testConnection))

    async def _testConnection(self, client: SFTPClient) -> None:
        await self._checkRoot(client)
        probe = self._path(PROBE_PREFIX + secrets.token_hex(8))
        handle = await client.openFile(
            probe, filetransfer.FXF_WRITE | filetransfer.FXF_CREAT | filetransfer.FXF_EXCL,
            {"permissions": 0o600})
        try:
            await handle.writeChunk(0, b"backupremote probe\n")
        finally:
            await handle.close()
        await client.removeFile(probe)

    async def _checkRoot(self, client: SFTPClient) -> None:
        try:
            attrs = await client.getAttrs(self._path(None))
        except filetransfer.SFTPError as e:
            raise BackupRemoteError(
                DESTINATION_REFUSED,
                f"{self.location}: the folder cannot be used ({e.message or e.code}); "
                "create it first") from None
        if not stat.S_ISDIR(attrs.get("permissions", 0)):
            raise BackupRemoteError(DESTINATION_REFUSED, f"{self.location}: not a folder")

    def put(self, source: FilePath, name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        return Deferred.fromCoroutine(self._put(source, name, progress, known))

    async def _put(self, source: FilePath, name: str, progress: Progress | None,
                   known: KnownDigest | None) -> PendingUpload:
        temporary = temporaryName(name)
        with openSource(source) as reading:
            return await self._run(f"writing {temporary}", self._upload, reading, name,
                                   temporary, progress, known)

    async def _upload(self, client: SFTPClient, reading: Any, name: str, temporary: str,
                      progress: Progress | None, known: KnownDigest | None) -> PendingUpload:
        await self._folderFor(client, name)
        path = self._path(temporary)
        handle = await client.openFile(
            path, filetransfer.FXF_WRITE | filetransfer.FXF_CREAT | filetransfer.FXF_EXCL,
            {"permissions": 0o600})
        try:
            counter = await self._write(handle, reading, progress, known)
            if _FSYNC in client.extensions:
                await client.extendedRequest(_FSYNC, handle.handle)  # (already an SSH string)
            await handle.close()
        except BaseException as e:
            await self._writeFailed(client, handle, path, e)
            raise
        return PendingUpload(name, temporary, counter.size, counter.hexdigest())

    async def _write(self, handle: Any, reading: Any, progress: Progress | None,
                     known: KnownDigest | None) -> DigestCounter:
        """Send the file with up to C{window} writes in flight; raise the first failure."""
        counter = DigestCounter(known)
        window = DeferredSemaphore(self._window)
        inFlight: set[Deferred[Any]] = set()
        failures: list[Failure] = []
        acknowledged = 0

        def done(result: Any, request: Deferred[Any], size: int) -> None:
            nonlocal acknowledged
            inFlight.discard(request)
            window.release()
            if isinstance(result, Failure):
                failures.append(result)
            else:
                acknowledged += size
                if progress is not None:
                    progress(acknowledged)

        offset = 0
        while not failures:
            await window.acquire()
            if failures:
                window.release()
                break
            chunk = reading.read(self._chunkSize)
            if not chunk:
                window.release()
                break
            counter.update(chunk)
            request = handle.writeChunk(offset, chunk)
            inFlight.add(request)
            request.addBoth(done, request, len(chunk))
            offset += len(chunk)
        if inFlight:
            await gatherResults(list(inFlight), consumeErrors=True).addErrback(lambda _: None)
        if failures:
            failures[0].raiseException()
        return counter

    async def _writeFailed(self, client: SFTPClient, handle: Any, path: str,
                           reason: BaseException) -> None:
        """Clean up after a failed upload; turn a "failure" of a full disk into DESTINATION_FULL."""
        full = False
        if isinstance(reason, filetransfer.SFTPError) and _STATVFS in client.extensions:
            folder = path.rpartition("/")[0] or ("/" if path.startswith("/") else ".")
            try:
                reply = await client.extendedRequest(_STATVFS, NS(folder.encode()))
                full = _freeBytes(reply) < 4 * self._chunkSize
            except Exception:
                full = False
        for attempt in (handle.close, lambda: client.removeFile(path)):
            try:
                await attempt()
            except Exception:
                pass
        if full:
            raise BackupRemoteError(
                DESTINATION_FULL, f"{self.location}: no space left while writing "
                                  f"{path.rpartition('/')[2]}")

    async def _folderFor(self, client: SFTPClient, name: str) -> None:
        folder, _ = splitName(name)
        if folder is None:
            return
        path = self._path(folder)
        try:
            await client.makeDirectory(path, {"permissions": 0o700})
        except filetransfer.SFTPError:
            pass  # it exists (or cannot be made: the check below says which)
        try:
            attrs = await client.getAttrs(path)
        except filetransfer.SFTPError as e:
            await self._checkRoot(client)
            raise BackupRemoteError(
                DESTINATION_REFUSED,
                f"{self.location}: cannot create the folder {folder} ({e.message or e.code})"
            ) from None
        if not stat.S_ISDIR(attrs.get("permissions", 0)):
            raise BackupRemoteError(DESTINATION_REFUSED,
                                    f"{self.location}: {folder} is not a folder")

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return Deferred.fromCoroutine(self._readBackChecked(name))

    async def _readBackChecked(self, name: str) -> ReadBack:
        checkAnyName(name)
        return await self._run(f"reading {name}", self._readBack, name)

    async def _readBack(self, client: SFTPClient, name: str) -> ReadBack:
        handle = await client.openFile(self._path(name), filetransfer.FXF_READ, {})
        try:
            size = (await handle.getAttrs()).get("size", 0)
            counter = DigestCounter()
            pending: dict[int, Deferred[bytes]] = {}
            nextRequest = 0

            def request(offset: int, length: int) -> Deferred[bytes]:
                return handle.readChunk(offset, length)

            position = 0
            while True:
                while nextRequest < size and len(pending) < self._window:
                    pending[nextRequest] = request(
                        nextRequest, min(self._chunkSize, size - nextRequest))
                    nextRequest += self._chunkSize
                if position in pending:
                    expected = min(self._chunkSize, size - position)
                    data = await _readOrEOF(pending.pop(position))
                    if len(data) < expected and data:
                        # a short read: read the rest of this chunk before going on
                        rest = position + len(data)
                        counter.update(data)
                        while rest < position + expected:
                            more = await _readOrEOF(request(rest, position + expected - rest))
                            if not more:
                                break
                            counter.update(more)
                            rest += len(more)
                        position += expected
                        continue
                    counter.update(data)
                    position += len(data) if data else expected
                    if not data:
                        break
                    continue
                # past the size stat gave: read on until the end of the file
                data = await _readOrEOF(request(position, self._chunkSize))
                if not data:
                    break
                counter.update(data)
                position += len(data)
            for leftover in pending.values():
                leftover.addErrback(lambda _: None)
            return counter.readBack()
        finally:
            try:
                await handle.close()
            except Exception:
                pass

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return Deferred.fromCoroutine(self._completeChecked(upload))

    async def _completeChecked(self, upload: PendingUpload) -> None:
        checkName(upload.name)
        if not isTemporary(upload.temporaryName) or (
                splitName(upload.temporaryName)[0] != splitName(upload.name)[0]):
            raise BackupRemoteError(DESTINATION_REFUSED, f"{upload.temporaryName} is not a "
                                                         f"temporary name beside {upload.name}")
        await self._run(f"renaming {upload.temporaryName}", self._complete, upload)

    async def _complete(self, client: SFTPClient, upload: PendingUpload) -> None:
        source, target = self._path(upload.temporaryName), self._path(upload.name)
        if _POSIX_RENAME in client.extensions:
            await client.extendedRequest(_POSIX_RENAME, NS(source.encode()) + NS(target.encode()))
            return
        await client.getAttrs(source)  # NOT_FOUND before removing the old copy
        try:
            await client.removeFile(target)
        except filetransfer.SFTPError as e:
            if e.code != filetransfer.FX_NO_SUCH_FILE:
                raise
        await client.renameFile(source, target)

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return Deferred.fromCoroutine(self._run("listing", self._listFiles))

    async def _listFiles(self, client: SFTPClient) -> list[RemoteFile]:
        await self._checkRoot(client)
        found: list[RemoteFile] = []
        for entry, attrs in await self._readFolder(client, None):
            mode = attrs.get("permissions", 0)
            if stat.S_ISDIR(mode) and isFolderName(entry):
                for inner, innerAttrs in await self._readFolder(client, entry):
                    self._add(found, f"{entry}/{inner}", innerAttrs)
            else:
                self._add(found, entry, attrs)
        return found

    @staticmethod
    def _add(found: list[RemoteFile], name: str, attrs: dict[str, Any]) -> None:
        if stat.S_ISREG(attrs.get("permissions", 0)) and isListable(name):
            mtime = attrs.get("mtime")
            found.append(RemoteFile(
                name, attrs.get("size", 0),
                datetime.fromtimestamp(mtime, timezone.utc) if mtime is not None else None,
                isTemporary(name)))

    async def _readFolder(self, client: SFTPClient, folder: str | None
                          ) -> list[tuple[str, dict[str, Any]]]:
        directory = await client.openDirectory(self._path(folder))
        entries: list[tuple[str, dict[str, Any]]] = []
        try:
            while True:
                try:
                    batch = await directory.read()
                except EOFError:
                    break
                for filename, _, attrs in batch:
                    text = filename.decode("utf-8", "replace")
                    if text not in (".", ".."):
                        entries.append((text, attrs))
        finally:
            await directory.close()
        return entries

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._deleteChecked(name))

    async def _deleteChecked(self, name: str) -> None:
        checkAnyName(name)
        await self._run(f"removing {name}", self._delete, name)

    async def _delete(self, client: SFTPClient, name: str) -> None:
        try:
            await client.removeFile(self._path(name))
        except filetransfer.SFTPError as e:
            if e.code != filetransfer.FX_NO_SUCH_FILE:
                raise

    def close(self) -> Deferred[None]:
        session, self._session = self._session, None
        if session is None:
            return succeed(None)
        return session.close()


async def _readOrEOF(request: Deferred[bytes]) -> bytes:
    try:
        return await request
    except EOFError:
        return b""


def _freeBytes(reply: bytes) -> int:
    """Free bytes for unprivileged users from a C{statvfs@openssh.com} reply."""
    _, frsize, _, _, bavail = struct.unpack(">5Q", reply[:40])
    return frsize * bavail
