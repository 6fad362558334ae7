"""
An FTPS server (explicit TLS: C{AUTH TLS}, then protected data connections)
as a destination, with the standard library's C{ftplib.FTP_TLS} in the
reactor's thread pool.

vsftpd (and others) by default require the data connection's TLS session to
resume the control connection's (C{require_ssl_reuse=YES}): the stock
C{FTP_TLS} starts a fresh session there and is refused, so
L{SessionReusingFTP_TLS} hands the control connection's session to every
data connection. The server's certificate is verified against the system's
CAs or a CA file, with its name checked, or pinned by its SHA-256
fingerprint (then checked on the control connection and on every data
connection). TLS 1.2 or newer only.

Each operation opens its own connection (so no idle connection is kept,
and a thread is never shared), streams through bounded buffers, and checks
a stop flag between them, which cancelling its Deferred sets.
"""

from __future__ import annotations

import ftplib
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.ftpcommon import (
    CHUNK_SIZE,
    TIMEOUT,
    absoluteRoot,
    joinPath,
    listedEntries,
    remoteFiles,
    replyError,
    subfolders,
)
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
    isTemporary,
    splitName,
    temporaryName,
)
from backupremote.client.destinations.httptls import pinHint
from backupremote.client.destinations.verified import openSource
from backupremote.client.destinations.pool import inPool
from backupremote.client.destinations.urls import FTPURL
from backupremote.protocol.errors import (
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    INTERNAL_ERROR,
    TIMEOUT as TIMEOUT_CODE,
    BackupRemoteError,
)
from backupremote.tls.certificates import fingerprintOfDer, normalizeFingerprint


class _PinMismatch(Exception):
    def __init__(self, fingerprint: str) -> None:
        super().__init__(fingerprint)
        self.fingerprint = fingerprint


class SessionReusingFTP_TLS(ftplib.FTP_TLS):
    """
    C{FTP_TLS} whose data connections resume the control connection's TLS
    session, and whose every TLS connection is checked against C{pins}
    (SHA-256 fingerprints) when there are any.
    """

    def __init__(self, context: ssl.SSLContext, pins: tuple[str, ...], timeout: float) -> None:
        super().__init__(context=context, timeout=timeout)
        self.pins = pins

    def checkPeer(self, connection: ssl.SSLSocket) -> None:
        if not self.pins:
            return
        der = connection.getpeercert(binary_form=True)
        fingerprint = fingerprintOfDer(der) if der else "(none)"
        if fingerprint not in self.pins:
            raise _PinMismatch(fingerprint)

    def auth(self) -> str:
        reply = super().auth()
        assert isinstance(self.sock, ssl.SSLSocket)
        self.checkPeer(self.sock)
        return reply

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        connection, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            connection = self.context.wrap_socket(
                connection, server_hostname=self.host,
                session=self.sock.session)  # type: ignore[union-attr]
            self.checkPeer(connection)
        return connection, size


def tlsContext(caFile: FilePath | None, pins: tuple[str, ...]) -> ssl.SSLContext:
    """Verify against C{caFile} (or the system's CAs) with the name checked, or only by C{pins}."""
    context = ssl.create_default_context(cafile=caFile.path if caFile is not None else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if pins:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Reader:
    """The local file as C{storbinary} reads it: hashed, reported, stoppable."""

    def __init__(self, handle: Any, stop: threading.Event, progress: Callable[[int], None] | None,
                 known: KnownDigest | None = None) -> None:
        self._handle = handle
        self._stop = stop
        self._progress = progress
        self.counter = DigestCounter(known)

    def read(self, size: int) -> bytes:
        if self._stop.is_set():
            raise CancelledError("the upload was cancelled")
        try:
            chunk = self._handle.read(size)
        except OSError as e:
            raise BackupRemoteError(
                INTERNAL_ERROR, f"cannot read the local file: {e.strerror}") from None
        self.counter.update(chunk)
        if chunk and self._progress is not None:
            self._progress(self.counter.size)
        return chunk


@implementer(IDestination)
class FTPSDestination:
    """
    The folder C{url.path} on the FTPS server C{url.host}:C{url.port}, as
    C{url.user}; its certificate verified against C{caFile} (default: the
    system's CAs) or pinned by C{fingerprints}; C{name} is the stored
    destination's, for the command in a mismatch's message.
    """

    type = "ftps"

    def __init__(self, reactor: IReactorThreads, url: FTPURL, password: str, *,
                 caFile: FilePath | None = None, fingerprints: tuple[str, ...] = (),
                 timeout: float = TIMEOUT, name: str | None = None) -> None:
        if not url.tls:
            raise BackupRemoteError(DESTINATION_REFUSED, "an ftp:// URL needs FTPDestination")
        self._reactor = reactor
        self.url = url
        self._password = password
        self._pins = tuple(normalizeFingerprint(p) for p in fingerprints)
        self._context = tlsContext(caFile, self._pins)
        self._timeout = timeout
        self._name = name
        self.location = url.url

    # One connection per operation, in a thread

    def _run(self, doing: str, operation: Callable[..., Any], *args: Any,
             notFound: bool = False) -> Deferred[Any]:
        return inPool(self._reactor, self._connected, doing, operation, notFound, *args)

    def _connected(self, stop: threading.Event, doing: str, operation: Callable[..., Any],
                   notFound: bool, *args: Any) -> Any:
        ftp = SessionReusingFTP_TLS(self._context, self._pins, self._timeout)
        try:
            try:
                ftp.connect(self.url.host, self.url.port)
                ftp.auth()
                ftp.login(self.url.user, self._password)
                ftp.prot_p()
                root = absoluteRoot(self.url.path, ftp.pwd())
            except Exception as e:
                raise self._translate(e, "logging in") from None
            try:
                return operation(ftp, root, stop, *args)
            except Exception as e:
                raise self._translate(e, doing, notFound) from None
        finally:
            try:
                ftp.quit()
            except Exception:
                ftp.close()

    def _translate(self, e: BaseException, doing: str, notFound: bool = False) -> BaseException:
        where = f"{self.url.host}:{self.url.port}"
        if isinstance(e, (BackupRemoteError, CancelledError)):
            return e
        if isinstance(e, ftplib.Error) and str(e)[:3].isdigit():
            return replyError(self.location, int(str(e)[:3]), str(e), doing, notFound)
        if isinstance(e, _PinMismatch):
            expected = ", ".join(self._pins)
            oneOf = "one of " if len(self._pins) > 1 else ""
            return BackupRemoteError(
                DESTINATION_IDENTITY_MISMATCH,
                f"the FTPS server at {where} presented a certificate with SHA-256 "
                f"fingerprint {e.fingerprint}, expected {oneOf}{expected}; if its "
                "certificate was renewed, confirm the new fingerprint with its operator "
                f"and pin it ({pinHint(self._name, e.fingerprint)}), otherwise this may be "
                "another machine: do not proceed",
                details={"fingerprint": e.fingerprint, "actual": e.fingerprint,
                         "expected": expected})
        if isinstance(e, ssl.SSLCertVerificationError):
            return BackupRemoteError(
                DESTINATION_IDENTITY_MISMATCH,
                f"the FTPS server at {where} presented a certificate that is not trusted "
                f"for {self.url.host} ({e.verify_message}): give its CA with --ca-file or "
                "pin its fingerprint")
        if isinstance(e, (socket.timeout, TimeoutError)):
            return BackupRemoteError(TIMEOUT_CODE, f"{self.location}: no answer for "
                                                   f"{self._timeout:g} s while {doing}")
        if isinstance(e, ssl.SSLError):
            return BackupRemoteError(DESTINATION_UNREACHABLE,
                                     f"{self.location}: TLS failed while {doing}: {e.reason}")
        if isinstance(e, ConnectionRefusedError):
            return BackupRemoteError(DESTINATION_UNREACHABLE,
                                     f"cannot connect to the FTPS server at {where}: "
                                     "connection refused")
        if isinstance(e, (OSError, EOFError, ftplib.Error)):
            return replyError(self.location, None, "", doing)
        return e

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return self._run("testing the folder", self._testConnection)

    def _testConnection(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event
                        ) -> None:
        self._checkRoot(ftp, root)
        probe = joinPath(root, PROBE_PREFIX + secrets.token_hex(8))
        ftp.storbinary(f"STOR {probe}", _Reader(_Bytes(b"backupremote probe\n"), stop, None))
        ftp.delete(probe)

    def _checkRoot(self, ftp: SessionReusingFTP_TLS, root: str) -> None:
        try:
            ftp.cwd(root)
        except ftplib.error_perm as e:
            raise BackupRemoteError(
                DESTINATION_REFUSED,
                f"{self.location}: the folder cannot be used ({str(e)[4:]}); create it first"
            ) from None

    def put(self, source: FilePath, name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        try:
            temporary = temporaryName(name)
        except BackupRemoteError:
            return fail()
        try:
            handle = openSource(source)
        except BackupRemoteError as error:
            return fail(error)
        report = None
        if progress is not None:
            report = lambda sent: self._reactor.callFromThread(progress, sent)  # noqa: E731
        result = self._run(f"writing {temporary}", self._put, handle, name, temporary, report,
                           known)
        return result.addBoth(lambda outcome: (handle.close(), outcome)[1])

    def _put(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event, handle: Any,
             name: str, temporary: str, progress: Callable[[int], None] | None,
             known: KnownDigest | None) -> PendingUpload:
        folder, _ = splitName(name)
        self._checkRoot(ftp, root)
        if folder is not None:
            try:
                ftp.mkd(joinPath(root, folder))
            except ftplib.error_perm:
                pass  # it exists, or the cwd below says why not
            ftp.cwd(joinPath(root, folder))
        reader = _Reader(handle, stop, progress, known)
        path = joinPath(root, temporary)
        try:
            ftp.storbinary(f"STOR {path}", reader, blocksize=CHUNK_SIZE)
        except BaseException:
            try:
                ftp.delete(path)
            except Exception:
                pass
            raise
        return PendingUpload(name, temporary, reader.counter.size, reader.counter.hexdigest())

    def readBack(self, name: str) -> Deferred[ReadBack]:
        try:
            checkAnyName(name)
        except BackupRemoteError:
            return fail()
        return self._run(f"reading {name}", self._readBack, name, notFound=True)

    def _readBack(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event,
                  name: str) -> ReadBack:
        counter = DigestCounter()

        def received(data: bytes) -> None:
            if stop.is_set():
                raise CancelledError("the read-back was cancelled")
            counter.update(data)
        ftp.retrbinary(f"RETR {joinPath(root, name)}", received, blocksize=CHUNK_SIZE)
        return counter.readBack()

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        try:
            checkName(upload.name)
            if not isTemporary(upload.temporaryName) or (
                    splitName(upload.temporaryName)[0] != splitName(upload.name)[0]):
                raise BackupRemoteError(
                    DESTINATION_REFUSED,
                    f"{upload.temporaryName} is not a temporary name beside {upload.name}")
        except BackupRemoteError:
            return fail()
        return self._run(f"renaming {upload.temporaryName}", self._complete, upload,
                         notFound=True)

    def _complete(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event,
                  upload: PendingUpload) -> None:
        ftp.rename(joinPath(root, upload.temporaryName), joinPath(root, upload.name))

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return self._run("listing", self._listFiles)

    def _listFiles(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event
                   ) -> list[RemoteFile]:
        self._checkRoot(ftp, root)

        def listing(folder: str | None) -> list[tuple[str, str, int]]:
            lines: list[str] = []
            ftp.retrlines(f"LIST -a {joinPath(root, folder)}", lines.append)
            return listedEntries(lines)
        entries = listing(None)
        found = remoteFiles(None, entries)
        for folder in subfolders(entries):
            found += remoteFiles(folder, listing(folder))
        return found

    def delete(self, name: str) -> Deferred[None]:
        try:
            checkAnyName(name)
        except BackupRemoteError:
            return fail()
        return self._run(f"removing {name}", self._delete, name)

    def _delete(self, ftp: SessionReusingFTP_TLS, root: str, stop: threading.Event,
                name: str) -> None:
        path = joinPath(root, name)
        try:
            ftp.delete(path)
        except ftplib.error_perm as e:
            try:
                ftp.size(path)
            except ftplib.error_perm as absent:
                if str(absent).startswith("550"):
                    return
            raise e from None

    def close(self) -> Deferred[None]:
        return succeed(None)


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int) -> bytes:
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk
