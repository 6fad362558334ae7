"""
Test twins of backupremote's parts, for our tests and for applications
that embed backupremote (treq's C{testing} pattern).

Each twin implements the same Interface as the real thing, and one
contract test suite runs against both (see C{tests/}), so a test that
passes with the twin says something true of the real one.

    store = MemoryClientStore()                # an IClientStore, synchronous
    destination = MemoryDestination()          # an IDestination, synchronous
    journal = MemoryUploadJournal()            # an IUploadJournal, synchronous
    channel = MemoryNotificationChannel()      # an INotificationChannel, synchronous
    engine = MemoryEngine()                    # an IEngine: a whole run, no database
    connection = LoopbackConnection(           # an IServerConnection, in memory
        clock, credentials, lambda: ServerProtocol(core, "192.0.2.1:4000", "192.0.2.1"))
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from attrs import define, evolve
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.protocols import amp
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.connection import ClientProtocol, Credentials, ServerConnection
from backupremote.client.store import MIGRATIONS, IClientStore, migrate
from backupremote.client.store.sqlite import runTransaction
from backupremote.client.destinations import interface as _destinations
from backupremote.client.destinations import names as _names
from backupremote.client.notify import interface as _notify
from backupremote.client.notify import messages as _messages
from backupremote.reactors import IWorkReactor
from backupremote.server.engines import base as _engines
from backupremote.server.engines import dumps as _dumps
from backupremote.protocol import databases as _databases
from backupremote.protocol.errors import DESTINATION_NOT_FOUND as _DESTINATION_NOT_FOUND
from backupremote.protocol.errors import CONNECTION_FAILED, INTERNAL_ERROR, BackupRemoteError


@implementer(IClientStore)
class MemoryClientStore:
    """
    The client store in memory: the same schema and SQL as
    L{backupremote.client.store.SQLiteClientStore}, but each transaction
    runs at once in the calling thread, so tests on a C{Clock} see its
    result without a reactor turn. A "restarted" client is a new runner on
    the same instance: what was committed is still there.
    """

    def __init__(self, migrations: Sequence[str] = MIGRATIONS) -> None:
        self._db: sqlite3.Connection | None = sqlite3.connect(":memory:", isolation_level=None)
        self._db.execute("PRAGMA foreign_keys=ON")
        self.schemaVersion = migrate(self._db, migrations, "the in-memory client store")
        #: how many transactions committed (a step of a job is one)
        self.commits = 0

    def opened(self) -> Deferred[None]:
        return succeed(None)

    def transact(self, work: Callable[[sqlite3.Connection], Any]) -> Deferred[Any]:
        if self._db is None:
            return fail(BackupRemoteError(INTERNAL_ERROR, "the client store is closed"))
        try:
            result = runTransaction(self._db, work)
        except BaseException:
            return fail()
        self.commits += 1
        return succeed(result)

    def close(self) -> Deferred[None]:
        if self._db is not None:
            self._db.close()
            self._db = None
        return succeed(None)


@implementer(_destinations.IDestination)
class MemoryDestination:
    """
    A destination in memory, passing the same contract suite as the real
    ones (C{tests/client/destinations/}). Every operation answers at once
    (a fired Deferred), so tests on a C{Clock} need no reactor turn.

    Faults for tests: L{failNext} makes the next call of an operation fail
    with a given error; L{corrupt} changes a stored file behind the
    client's back; C{files} is what the "server" holds.

    With a C{partSize}, a put of a larger file with a journal is sent in
    parts like an S3 multipart upload (each part a C{"part"} operation, so
    C{failNext("part", ...)} stops it midway; C{holdPart} makes it wait
    before a part), recorded in the journal, kept in C{uploads} when it
    stops, and resumed by the next put with that journal (the parts it
    recorded are not sent again); C{uploads.clear()} is an expiry.

    A put handed a L{KnownDigest<backupremote.client.destinations.KnownDigest>}
    only counts the bytes, as the real ones do; C{known} lists what each put
    was handed.
    """

    def __init__(self, type: str = "local", name: str = "memory",
                 clock: IReactorTime | None = None, partSize: int | None = None) -> None:
        self.type = type
        self.location = f"memory:{name}"
        self.clock = clock if clock is not None else Clock()
        #: name -> content, for final and temporary names alike
        self.files: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        #: operation name -> errors its next calls raise, first first
        self.failures: dict[str, list[BaseException]] = {}
        #: how many times each operation was called
        self.calls: dict[str, int] = {}
        self.closed = False
        self.partSize = partSize
        #: unfinished uploads: id -> (temporary name, part number -> bytes)
        self.uploads: dict[str, tuple[str, dict[int, bytes]]] = {}
        #: part number -> a Deferred the put waits for before sending that part
        self.heldParts: dict[int, Deferred[None]] = {}
        #: the known digest (or None) each put was handed, first first
        self.known: list[_destinations.KnownDigest | None] = []
        self._uploadIds = 0

    def holdPart(self, number: int) -> Deferred[None]:
        """Make puts wait before sending part C{number} until the returned Deferred fires."""
        held: Deferred[None] = Deferred()
        self.heldParts[number] = held
        return held

    def failNext(self, operation: str, error: BaseException) -> None:
        """Make the next call of C{operation} (e.g. C{"put"}) fail with C{error}."""
        self.failures.setdefault(operation, []).append(error)

    def corrupt(self, name: str) -> None:
        """Flip the first byte of C{name} (an empty file gains one)."""
        data = self.files[name]
        self.files[name] = bytes([data[0] ^ 0xFF]) + data[1:] if data else b"\0"

    def _enter(self, operation: str) -> None:
        self.calls[operation] = self.calls.get(operation, 0) + 1
        self.closed = False
        pending = self.failures.get(operation)
        if pending:
            raise pending.pop(0)

    def _store(self, name: str, data: bytes) -> None:
        self.files[name] = data
        self.modified[name] = self.clock.seconds()

    def _missing(self, name: str) -> BackupRemoteError:
        return BackupRemoteError(
            _DESTINATION_NOT_FOUND, f"{self.location} holds no file {name}")

    def testConnection(self) -> Deferred[None]:
        try:
            self._enter("testConnection")
        except BaseException:
            return fail()
        return succeed(None)

    def put(self, source: FilePath, name: str,
            progress: _destinations.Progress | None = None,
            journal: _destinations.IUploadJournal | None = None,
            known: _destinations.KnownDigest | None = None,
            ) -> Deferred[_destinations.PendingUpload]:
        self.known.append(known)
        if journal is not None and self.partSize is not None and \
                source.exists() and source.getsize() > self.partSize:
            return Deferred.fromCoroutine(self._putInParts(source, name, progress, journal,
                                                           self.partSize, known))
        try:
            self._enter("put")
            temporary = _names.temporaryName(name)
            counter = _destinations.DigestCounter(known)
            chunks = []
            with open(source.path, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 16), b""):
                    counter.update(chunk)
                    chunks.append(chunk)
                    if progress is not None:
                        progress(counter.size)
            self._store(temporary, b"".join(chunks))
        except OSError as e:
            return fail(BackupRemoteError(INTERNAL_ERROR, f"cannot read {source.path}: {e.strerror}"))
        except BaseException:
            return fail()
        return succeed(_destinations.PendingUpload(name, temporary, counter.size, counter.hexdigest()))

    async def _putInParts(self, source: FilePath[str], name: str,
                          progress: _destinations.Progress | None,
                          journal: _destinations.IUploadJournal,
                          partSize: int, known: _destinations.KnownDigest | None
                          ) -> _destinations.PendingUpload:
        self._enter("put")
        _names.checkName(name)
        stat = os.stat(source.path)
        state = journal.state
        size, modifiedNs = stat.st_size, stat.st_mtime_ns
        if state is None or state.name != name or state.uploadId not in self.uploads or (
                state.size, state.modifiedNs) != (size, modifiedNs):
            if state is not None:
                self.uploads.pop(state.uploadId, None)
            self._uploadIds += 1
            state = _destinations.UploadState(
                name, _names.temporaryName(name), f"upload-{self._uploadIds}", size, modifiedNs,
                partSize)
            self.uploads[state.uploadId] = (state.temporaryName, {})
            await journal.begin(state)
        held = self.uploads[state.uploadId][1]
        recorded = {part.number: part for part in state.parts}
        counter = _destinations.DigestCounter(known)
        with open(source.path, "rb") as handle:
            for number, start in enumerate(range(0, size, state.partSize), start=1):
                data = handle.read(state.partSize)
                counter.update(data)
                sha256 = hashlib.sha256(data).hexdigest()
                etag = hashlib.md5(data).hexdigest()
                part = recorded.get(number)
                if part is None or held.get(number) is None or (
                        part.start, part.length, part.sha256, part.etag) != (
                        start, len(data), sha256, hashlib.md5(held[number]).hexdigest()):
                    waitFor = self.heldParts.pop(number, None)
                    if waitFor is not None:
                        await waitFor
                    self._enter("part")
                    held[number] = data
                    await journal.confirmed(state.uploadId, _destinations.UploadedPart(
                        number, start, len(data), etag, sha256))
                if progress is not None:
                    progress(counter.size)
        if counter.size != size:
            raise BackupRemoteError(INTERNAL_ERROR, f"{source.path} changed size while it was sent")
        temporary, parts = self.uploads.pop(state.uploadId)
        self._store(temporary, b"".join(parts[number] for number in sorted(parts)))
        return _destinations.PendingUpload(name, temporary, size, counter.hexdigest())

    def readBack(self, name: str) -> Deferred[_destinations.ReadBack]:
        try:
            self._enter("readBack")
            _names.checkAnyName(name)
            if name not in self.files:
                raise self._missing(name)
        except BaseException:
            return fail()
        counter = _destinations.DigestCounter()
        counter.update(self.files[name])
        return succeed(counter.readBack())

    def complete(self, upload: _destinations.PendingUpload) -> Deferred[None]:
        try:
            self._enter("complete")
            _names.checkName(upload.name)
            if upload.temporaryName not in self.files:
                raise self._missing(upload.temporaryName)
        except BaseException:
            return fail()
        self._store(upload.name, self.files.pop(upload.temporaryName))
        self.modified.pop(upload.temporaryName, None)
        return succeed(None)

    def listFiles(self) -> Deferred[list[_destinations.RemoteFile]]:
        try:
            self._enter("listFiles")
        except BaseException:
            return fail()
        return succeed([
            _destinations.RemoteFile(
                name, len(data), datetime.fromtimestamp(self.modified[name], timezone.utc),
                _names.isTemporary(name))
            for name, data in self.files.items() if _names.isListable(name)
        ])

    def delete(self, name: str) -> Deferred[None]:
        try:
            self._enter("delete")
            _names.checkAnyName(name)
        except BaseException:
            return fail()
        self.files.pop(name, None)
        self.modified.pop(name, None)
        for uploadId, (temporary, _) in list(self.uploads.items()):
            if temporary == name:
                del self.uploads[uploadId]
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


@implementer(_destinations.IUploadJournal)
class MemoryUploadJournal:
    """
    An upload journal in memory (the delivery queue keeps its own in the
    client's store). C{begins} counts the uploads begun; C{failAfter}
    (a fault for tests) makes C{confirmed} fail once that many parts were
    recorded: the process ended just after the server confirmed a part.
    """

    def __init__(self, state: _destinations.UploadState | None = None,
                 failAfter: int | None = None) -> None:
        self.state = state
        self.failAfter = failAfter
        self.begins = 0

    def begin(self, state: _destinations.UploadState) -> Deferred[None]:
        self.state = state
        self.begins += 1
        return succeed(None)

    def confirmed(self, uploadId: str, part: _destinations.UploadedPart) -> Deferred[None]:
        state = self.state
        if state is None or state.uploadId != uploadId:
            return succeed(None)
        if self.failAfter is not None and len(state.parts) >= self.failAfter:
            return fail(JournalStopped(INTERNAL_ERROR, "the journal stopped (a test's fault)"))
        parts = {p.number: p for p in state.parts}
        parts[part.number] = part
        self.state = evolve(state, parts=tuple(parts[n] for n in sorted(parts)))
        return succeed(None)


class JournalStopped(BackupRemoteError):
    """What L{MemoryUploadJournal.confirmed} fails with past its C{failAfter}."""


class _PumpedTransport(FakeTransport):
    """An iosim transport that asks for a pump whenever there is something to move."""

    onActivity: Any = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.onActivity is not None:
            self.onActivity()

    def loseConnection(self) -> None:
        super().loseConnection()
        if self.onActivity is not None:
            self.onActivity()

    abortConnection = loseConnection


class LoopbackConnection(ServerConnection):
    """
    The client's connection to a server, in memory: the real connection's
    behaviour (authentication at connect, keep-alive, calls with request
    ids and registry errors, run events followed again on each new
    connection, pushed transfer boxes) over C{twisted.test.iosim}
    connections to the AMP protocol C{serverProtocol()} makes, every box
    serialised and parsed on both sides. A dropped connection is replaced
    at the next call, as the reconnecting one would.

    With C{autoPump} (the default) bytes move on the next turn of the
    reactor (with a C{Clock}: at C{clock.advance(0)}); without it the test
    moves them with L{step} or L{flush} and decides where to L{cut}.
    """

    def __init__(self, clock: IReactorTime, credentials: Credentials,
                 serverProtocol: Callable[[], amp.AMP], autoPump: bool = True,
                 keepaliveInterval: float = 30.0, keepaliveTimeout: float = 20.0,
                 callTimeout: float = 60.0) -> None:
        super().__init__(clock, credentials, keepaliveInterval, keepaliveTimeout, callTimeout)
        self._serverProtocol = serverProtocol
        self._autoPump = autoPump
        self._pumpCall: Any = None
        self._running = True
        #: every connection made, oldest first (an L{IOPump} each)
        self.pumps: list[IOPump] = []
        #: connection attempts still to refuse (C{CONNECTION_FAILED}), as a server that is down
        self.refusals = 0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def current(self) -> IOPump | None:
        """The live connection, if there is one."""
        if self.pumps and not self.pumps[-1].client.lost.called:
            return self.pumps[-1]
        return None

    async def _connect(self) -> ClientProtocol:
        if self.current is None:
            if self.refusals:
                self.refusals -= 1
                raise BackupRemoteError(CONNECTION_FAILED, "connection refused (twin)")
            client = self.buildProtocol()
            server = self._serverProtocol()
            clientIO = _PumpedTransport(client, isServer=False)
            serverIO = _PumpedTransport(server, isServer=True)
            if self._autoPump:
                clientIO.onActivity = serverIO.onActivity = self._schedulePump
            self.pumps.append(connect(server, serverIO, client, clientIO, greet=False,
                                      clock=self.reactor))
            if self._autoPump:
                self._schedulePump()
        pump = self.current
        assert pump is not None
        return pump.client

    def _schedulePump(self) -> None:
        if self._pumpCall is None or not self._pumpCall.active():
            self._pumpCall = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Move bytes until both sides are quiet."""
        for pump in list(self.pumps):
            pump.flush(advanceClock=False)

    def step(self) -> bool:
        """Deliver what the client wrote, and one write of the server's; whether anything moved."""
        pump = self.current
        if pump is None:
            return False
        server, client = pump.serverIO, pump.clientIO
        moved = False
        if client.stream:
            data = b"".join(client.stream)
            client.stream.clear()
            server.bufferReceived(data)
            moved = True
        if server.stream:
            client.bufferReceived(server.stream.pop(0))
            moved = True
        if not moved and (server.disconnecting or client.disconnecting):
            pump.flush(advanceClock=False)
            return True
        return moved

    def cut(self, partial: int = 0) -> None:
        """Drop the live connection and what is in flight (but C{partial} bytes of it)."""
        pump = self.current
        if pump is None:
            return
        server, client = pump.serverIO, pump.clientIO
        if partial and server.stream:
            client.bufferReceived(server.stream[0][:partial])
        for io in (server, client):
            io.stream.clear()
            io.disconnectReason = ConnectionLost("cut (twin)")
            io.disconnecting = io.disconnected = True
        client.reportDisconnect()
        server.reportDisconnect()

    def _stopConnecting(self) -> Deferred[None]:
        self._running = False
        self.cut()
        return succeed(None)


@implementer(_notify.INotificationChannel)
class MemoryNotificationChannel:
    """
    A notification channel in memory, passing the same contract suite as
    email and webhook (C{tests/client/notify/}). Each send answers at once
    (a fired Deferred), so tests on a C{Clock} need no reactor turn.

    C{sent} holds what was taken, in order; L{failNext} makes the next send
    fail with a given error (as a real channel fails once its own retries
    are used up); C{attempts} counts every send.
    """

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.sent: list[_messages.Notification] = []
        self.failures: list[BaseException] = []
        self.attempts = 0

    def failNext(self, error: BaseException) -> None:
        self.failures.append(error)

    @property
    def events(self) -> list[Any]:
        """Every event of every notification taken, in order."""
        return [event for notification in self.sent for event in notification.events]

    def send(self, notification: _messages.Notification) -> Deferred[None]:
        self.attempts += 1
        if self.failures:
            return fail(self.failures.pop(0))
        self.sent.append(notification)
        return succeed(None)


#: What a L{MemoryEngine} holds unless told otherwise: a recognisable header
#: and enough bytes for several dump steps.
MEMORY_DATABASE = b"BACKUPREMOTE MEMORY DATABASE\n" + bytes(range(256)) * 1024


@implementer(_engines.IEngine)
@define
class MemoryEngine:
    """
    A database engine in memory (an C{IEngine}): its database is the bytes
    C{content}, which its dump plan writes in-process, in the pipeline's
    own thread and in steps of C{step} bytes (as SQLite's online backup
    does), so a whole run goes through the real pipeline (compression,
    hashing, verification, staging) with no program and no database. Its
    check: the decompressed backup starts like C{content} ("stream") and is
    exactly C{content} ("full").

    Faults for tests: C{result} is what a connection test answers (default:
    ok, C{content}'s size); C{dumpError} is raised by L{chooseDumpTool}
    (C{TOOL_MISSING}, say); C{failDump} is raised by the dump after its
    first step; C{damageAt} makes the dump write the byte at that offset
    wrong (verification then fails: "stream" at offset 0, "full" anywhere).
    """

    content: bytes = MEMORY_DATABASE
    result: _databases.ConnectionTestResult | None = None
    dumpError: BackupRemoteError | None = None
    failDump: BaseException | None = None
    damageAt: int | None = None
    step: int = 64 * 1024
    name: str = "memory"
    defaultPort: int | None = None
    programs: tuple[tuple[str, str], ...] = ()  # it runs none
    formats: tuple[str, ...] = ("raw",)
    optionNames: frozenset[str] = frozenset()
    optionsKeepingPassword: frozenset[str] = frozenset()

    def validate(self, config: _databases.DatabaseConfigInput,
                 problems: _engines.FieldProblems) -> None:
        pass

    async def probe(self, target: _engines.Target, tools: Any, reactor: IWorkReactor,
                    timeout: float) -> _databases.ConnectionTestResult:
        if self.result is not None:
            return self.result
        return _databases.ConnectionTestResult(
            ok=True, reason=None, message="the memory database answers", serverVersion="1.0",
            latencyMs=0.001, sizeBytes=len(self.content), tool="memory")

    async def chooseDumpTool(self, tools: Any,
                             serverVersion: str | None) -> _databases.ToolChoice:
        if self.dumpError is not None:
            raise self.dumpError
        return _databases.ToolChoice("memdump", "(in-process)", "1.0", "the only one")

    async def dumpPlan(self, target: _engines.Target, format: str, tools: Any,
                       serverVersion: str | None) -> _dumps.DumpPlan:
        choice = await self.chooseDumpTool(tools, serverVersion)
        content = self.content
        check = _dumps.EngineCheck(
            description="the memory check", head=lambda head: content.startswith(head),
            fileCheck=self._checkFile, fullScratchSuffix=".raw")
        return _dumps.DumpPlan(
            format=format, extension=".raw", toolName=f"{choice.name} {choice.version}",
            check=check, inProcess=_dumps.InProcessDump(
                "backupremote-memory-dump", self._dump,
                lambda error: error if isinstance(error, BackupRemoteError) else None))

    def _dump(self, path: str, shouldStop: Callable[[], bool],
              onProgress: Callable[[int, int], None]) -> int:
        written = self.content
        if self.damageAt is not None:
            wrong = bytes([written[self.damageAt] ^ 0xFF])
            written = written[:self.damageAt] + wrong + written[self.damageAt + 1:]
        with open(path, "xb") as output:
            for start in range(0, len(written), self.step):
                if shouldStop():
                    raise _dumps.BackupStopped()
                output.write(written[start:start + self.step])
                onProgress(min(start + self.step, len(written)), len(written))
                if self.failDump is not None:
                    raise self.failDump
        return len(written)

    def _checkFile(self, path: str, shouldStop: Callable[[], bool]) -> str | None:
        with open(path, "rb") as stream:
            found = stream.read()
        if found != self.content:
            return f"{len(found)} bytes that are not the database's {len(self.content)}"
        return None


__all__ = ["JournalStopped", "LoopbackConnection", "MemoryClientStore", "MemoryDestination",
           "MemoryEngine", "MemoryNotificationChannel", "MemoryUploadJournal"]
