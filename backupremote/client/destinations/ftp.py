"""
A plain FTP server as a destination, with Twisted's FTP client.

Plain FTP sends the password and the backups in clear: use it on a network
you trust, FTPS (L{backupremote.client.destinations.ftps}) elsewhere.

One control connection is kept between operations (reopened when lost);
data connections are passive, to the address of the control connection
(never the one a C{PASV} reply names). Uploads are pulled from the local
file by the data connection as it drains (bounded memory), hashed on the
way; read-backs hash as the data arrives. C{STOR} to a temporary name, then
C{RNFR}/C{RNTO} (a rename on the server's disk). A transfer that makes no
progress for C{timeout} seconds is aborted (C{TIMEOUT}).
"""

from __future__ import annotations

import io
import secrets
from typing import Any

from twisted.internet import error as netError
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IPullProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.protocols import ftp as twistedFTP
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.destinations.ftpcommon import (
    CHUNK_SIZE,
    TIMEOUT,
    absoluteRoot,
    joinPath,
    listedEntries,
    parsePWD,
    remoteFiles,
    replyError,
    subfolders,
)
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
    isTemporary,
    splitName,
    temporaryName,
)
from backupremote.client.destinations.verified import openSource
from backupremote.client.destinations.urls import FTPURL
from backupremote.protocol.errors import (
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    INTERNAL_ERROR,
    TIMEOUT as TIMEOUT_CODE,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor


class _Watchdog:
    """Calls C{expire} when C{touch} was not called for C{timeout} seconds."""

    def __init__(self, reactor: IReactorTime, timeout: float, expire: Any) -> None:
        self._call = reactor.callLater(timeout, expire)
        self._timeout = timeout

    def touch(self) -> None:
        if self._call.active():
            self._call.reset(self._timeout)

    def stop(self) -> None:
        if self._call.active():
            self._call.cancel()


class _Client(twistedFTP.FTPClient):
    def __init__(self, session: _Session, user: str, password: str) -> None:
        super().__init__(user, password, passive=1)
        self.session = session

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        self.session.connectionLost()


class _Session:
    """One control connection: logged in, with its absolute root."""

    def __init__(self, destination: FTPDestination) -> None:
        self.destination = destination
        self.client: _Client | None = None
        self.root = ""
        self.error: BackupRemoteError | None = None
        self.alive = False
        self.lost: Deferred[None] = Deferred()

    async def connect(self) -> None:
        url = self.destination.url
        endpoint = HostnameEndpoint(self.destination._reactor, url.host, url.port,
                                    timeout=self.destination._timeout)
        try:
            self.client = await endpoint.connect(Factory.forProtocol(
                lambda: _Client(self, url.user, self.destination._password)))
        except Exception as e:
            raise BackupRemoteError(
                DESTINATION_UNREACHABLE,
                f"cannot connect to the FTP server at {url.host}:{url.port}: "
                f"{'connection refused' if isinstance(e, netError.ConnectionRefusedError) else e}"
            ) from None
        self.alive = True
        reply = await self.command("PWD", "logging in")
        self.root = absoluteRoot(url.path, parsePWD(reply))

    def connectionLost(self) -> None:
        self.alive = False
        if not self.lost.called:
            self.lost.callback(None)

    def abort(self, error: BackupRemoteError) -> None:
        self.error = self.error or error
        if self.client is not None and self.client.transport is not None:
            self.client.transport.abortConnection()

    def timedOut(self, doing: str) -> None:
        self.abort(BackupRemoteError(
            TIMEOUT_CODE, f"{self.destination.location}: no progress for "
                          f"{self.destination._timeout:g} s while {doing}"))

    def translate(self, reason: BaseException, doing: str, notFound: bool = False
                  ) -> BaseException:
        """The registry error for a failure of the FTP client."""
        if isinstance(reason, BackupRemoteError):
            return reason
        if self.error is not None:
            return self.error
        cause: Any = reason
        if isinstance(cause, twistedFTP.ConnectionLost) and len(cause.args) > 1:
            inner = cause.args[1]
            cause = inner.value if isinstance(inner, Failure) else inner
        if isinstance(cause, twistedFTP.CommandFailed):
            lines = cause.args[0] if cause.args else []
            last = lines[-1] if lines else ""
            code = int(last[:3]) if last[:3].isdigit() else None
            return replyError(self.destination.location, code, last, doing, notFound)
        if isinstance(cause, (netError.ConnectionLost, netError.ConnectionDone,
                              twistedFTP.ConnectionLost, netError.ConnectError)):
            return replyError(self.destination.location, None, "", doing)
        return cause

    async def command(self, text: str, doing: str, notFound: bool = False) -> str:
        """Send C{text}; the last line of the reply."""
        assert self.client is not None
        request = self.client.queueStringCommand(text)
        watchdog = _Watchdog(self.destination._reactor, self.destination._timeout,
                             lambda: self.timedOut(doing))
        try:
            reply = await request
        except Exception as e:
            raise self.translate(e, doing, notFound) from None
        finally:
            watchdog.stop()
        return reply[-1] if reply else ""

    def path(self, name: str | None) -> str:
        return joinPath(self.root, name)


@implementer(IPullProducer)
class _FileProducer:
    """Feeds the data connection from the local file as it drains."""

    def __init__(self, reading: io.RawIOBase, consumer: Any, watchdog: _Watchdog,
                 progress: Progress | None, known: KnownDigest | None = None) -> None:
        self._reading = reading
        self._consumer = consumer
        self._watchdog = watchdog
        self._progress = progress
        self.counter = DigestCounter(known)
        self.done: Deferred[None] = Deferred()

    def resumeProducing(self) -> None:
        if self.done.called:
            return
        try:
            chunk = self._reading.read(CHUNK_SIZE)
        except OSError as e:
            self.done.errback(BackupRemoteError(
                INTERNAL_ERROR, f"cannot read the local file: {e.strerror}"))
            self._consumer.transport.abortConnection()
            return
        self._watchdog.touch()
        if not chunk:
            self._consumer.unregisterProducer()
            self._consumer.finish()
            self.done.callback(None)
            return
        self.counter.update(chunk)
        self._consumer.write(chunk)
        if self._progress is not None:
            self._progress(self.counter.size)

    def stopProducing(self) -> None:
        if not self.done.called:
            self.done.errback(netError.ConnectionLost())


class _Hashing(Protocol):
    def __init__(self, watchdog: _Watchdog) -> None:
        self.counter = DigestCounter()
        self._watchdog = watchdog

    def dataReceived(self, data: bytes) -> None:
        self.counter.update(data)
        self._watchdog.touch()


async def _firstOf(wanted: Deferred[Any], other: Deferred[Any]) -> Any:
    """
    C{wanted}'s result, unless C{other} (which the caller awaits later)
    fails first: then that failure.
    """
    race: Deferred[tuple[bool, Any]] = Deferred()

    def fromWanted(result: Any) -> None:
        if not race.called:
            race.callback((True, result))

    def fromOther(result: Any) -> Any:
        if isinstance(result, Failure) and not race.called:
            race.callback((False, result))
        return result

    wanted.addBoth(fromWanted)
    other.addBoth(fromOther)
    won, result = await race
    if isinstance(result, Failure):
        if not won:
            other.addErrback(lambda _: None)  # raised here, not awaited again
        result.raiseException()
    return result


class _Lines(Protocol):
    def __init__(self) -> None:
        self.buffer = b""

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data


@implementer(IDestination)
class FTPDestination:
    """The folder C{url.path} on the FTP server C{url.host}:C{url.port}, as C{url.user}."""

    type = "ftp"

    def __init__(self, reactor: IConnectingReactor, url: FTPURL, password: str,
                 timeout: float = TIMEOUT) -> None:
        if url.tls:
            raise BackupRemoteError(DESTINATION_REFUSED, "an ftps:// URL needs FTPSDestination")
        self._reactor = reactor
        self.url = url
        self._password = password
        self._timeout = timeout
        self.location = url.url
        self._session: _Session | None = None
        self._connecting: OneAttempt[_Session] = OneAttempt()

    # The connection

    async def _sessionNow(self) -> _Session:
        session = self._session
        if session is not None and session.alive:
            return session
        return await self._connecting.join(self._connect, self._notConnected)

    def _connect(self) -> Deferred[_Session]:
        session = self._session = _Session(self)
        return Deferred.fromCoroutine(session.connect()).addCallback(lambda _: session)

    def _notConnected(self, failure: Failure) -> None:
        if self._session is not None:
            if isinstance(failure.value, BackupRemoteError):
                self._session.abort(failure.value)
            self._session = None

    async def _checkRoot(self, session: _Session) -> None:
        try:
            await session.command(f"CWD {session.root}", "opening the folder")
        except BackupRemoteError as e:
            if e.code != DESTINATION_REFUSED:
                raise
            raise BackupRemoteError(
                DESTINATION_REFUSED, f"{self.location}: the folder cannot be used "
                                     f"({e.message.rpartition(': ')[2]}); create it first"
            ) from None

    # IDestination

    def testConnection(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._testConnection())

    async def _testConnection(self) -> None:
        session = await self._sessionNow()
        await self._checkRoot(session)
        probe = PROBE_PREFIX + secrets.token_hex(8)
        await self._store(session, io.BytesIO(b"backupremote probe\n"), probe, None)
        await session.command(f"DELE {session.path(probe)}", "removing the probe file")

    def put(self, source: FilePath, name: str,
            progress: Progress | None = None,
            journal: IUploadJournal | None = None,
            known: KnownDigest | None = None) -> Deferred[PendingUpload]:
        return Deferred.fromCoroutine(self._put(source, name, progress, known))

    async def _put(self, source: FilePath, name: str, progress: Progress | None,
                   known: KnownDigest | None) -> PendingUpload:
        temporary = temporaryName(name)
        with openSource(source) as reading:
            session = await self._sessionNow()
            await self._folderFor(session, name)
            try:
                counter = await self._store(session, reading, temporary, progress, known)
            except BaseException:
                await self._discard(temporary)
                raise
        return PendingUpload(name, temporary, counter.size, counter.hexdigest())

    async def _store(self, session: _Session, reading: Any, name: str,
                     progress: Progress | None, known: KnownDigest | None = None
                     ) -> DigestCounter:
        doing = f"writing {name}"
        assert session.client is not None
        connected, finished = session.client.storeFile(session.path(name))
        watchdog = _Watchdog(self._reactor, self._timeout, lambda: session.timedOut(doing))
        try:
            consumer = await _firstOf(connected, finished)
            producer = _FileProducer(reading, consumer, watchdog, progress, known)
            consumer.registerProducer(producer, False)
            await _firstOf(producer.done, finished)
            watchdog.touch()
            await finished
        except Exception as e:
            for pending in (connected, finished):
                pending.addErrback(lambda _: None)  # the first failure is the one reported
            raise session.translate(e, doing) from None
        finally:
            watchdog.stop()
        return producer.counter

    async def _discard(self, name: str) -> None:
        try:
            await self.delete(name)
        except Exception:
            pass

    async def _folderFor(self, session: _Session, name: str) -> None:
        folder, _ = splitName(name)
        if folder is None:
            await self._checkRoot(session)
            return
        try:
            await session.command(f"MKD {session.path(folder)}", f"creating {folder}")
        except BackupRemoteError as e:
            if e.code != DESTINATION_REFUSED:
                raise
        try:
            await session.command(f"CWD {session.path(folder)}", f"opening {folder}")
        except BackupRemoteError:
            await self._checkRoot(session)
            raise

    def readBack(self, name: str) -> Deferred[ReadBack]:
        return Deferred.fromCoroutine(self._readBack(name))

    async def _readBack(self, name: str) -> ReadBack:
        checkAnyName(name)
        session = await self._sessionNow()
        doing = f"reading {name}"
        watchdog = _Watchdog(self._reactor, self._timeout, lambda: session.timedOut(doing))
        sink = _Hashing(watchdog)
        assert session.client is not None
        try:
            await session.client.retrieveFile(session.path(name), sink)
        except Exception as e:
            raise session.translate(e, doing, notFound=True) from None
        finally:
            watchdog.stop()
        return sink.counter.readBack()

    def complete(self, upload: PendingUpload) -> Deferred[None]:
        return Deferred.fromCoroutine(self._complete(upload))

    async def _complete(self, upload: PendingUpload) -> None:
        checkName(upload.name)
        if not isTemporary(upload.temporaryName) or (
                splitName(upload.temporaryName)[0] != splitName(upload.name)[0]):
            raise BackupRemoteError(DESTINATION_REFUSED, f"{upload.temporaryName} is not a "
                                                         f"temporary name beside {upload.name}")
        session = await self._sessionNow()
        doing = f"renaming {upload.temporaryName}"
        await session.command(f"RNFR {session.path(upload.temporaryName)}", doing,
                              notFound=True)
        await session.command(f"RNTO {session.path(upload.name)}", doing)

    def listFiles(self) -> Deferred[list[RemoteFile]]:
        return Deferred.fromCoroutine(self._listFiles())

    async def _listFiles(self) -> list[RemoteFile]:
        session = await self._sessionNow()
        await self._checkRoot(session)
        entries = await self._list(session, None)
        found = remoteFiles(None, entries)
        for folder in subfolders(entries):
            found += remoteFiles(folder, await self._list(session, folder))
        return found

    async def _list(self, session: _Session, folder: str | None) -> list[tuple[str, str, int]]:
        doing = f"listing {folder or 'the folder'}"
        watchdog = _Watchdog(self._reactor, self._timeout, lambda: session.timedOut(doing))
        sink = _Lines()
        assert session.client is not None
        try:
            await session.client.receiveFromConnection([f"LIST -a {session.path(folder)}"], sink)
        except Exception as e:
            raise session.translate(e, doing) from None
        finally:
            watchdog.stop()
        return listedEntries(sink.buffer.decode("utf-8", "replace").splitlines())

    def delete(self, name: str) -> Deferred[None]:
        return Deferred.fromCoroutine(self._delete(name))

    async def _delete(self, name: str) -> None:
        checkAnyName(name)
        session = await self._sessionNow()
        try:
            await session.command(f"DELE {session.path(name)}", f"removing {name}")
        except BackupRemoteError as e:
            if e.code != DESTINATION_REFUSED:
                raise
            try:
                await session.command(f"SIZE {session.path(name)}", f"removing {name}",
                                      notFound=True)
            except BackupRemoteError as absent:
                if absent.code == "DESTINATION_NOT_FOUND":
                    return
            raise e from None

    def close(self) -> Deferred[None]:
        session, self._session = self._session, None
        if session is None or session.client is None or not session.alive:
            return succeed(None)
        session.client.quit().addErrback(lambda _: None)
        session.client.transport.loseConnection()
        return session.lost
