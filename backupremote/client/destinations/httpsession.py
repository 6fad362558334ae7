"""
The HTTP(S) side of the WebDAV and S3-compatible destinations.

L{HTTPSession} sends requests to one server through C{treq} with the
destination's TLS policy (L{PeerVerification}), its credentials (C{auth=},
never in the URL) and a stall timeout: an operation is cancelled once nothing
has moved (request body sent, response bytes received) for C{timeout}
seconds, so a long upload may take as long as it needs while a dead server is
noticed. Request bodies stream from the local file (L{FileSliceProducer},
with the transport's back-pressure); response bodies stream into a sink or,
for small XML answers, are collected up to a cap. Failures become
L{BackupRemoteError}s with C{DESTINATION_*} codes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import treq.client
from attrs import frozen
from twisted.internet import task
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from backupremote.client.destinations.httptls import PeerVerification
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_FULL,
    DESTINATION_NOT_FOUND,
    DESTINATION_REFUSED,
    DESTINATION_UNREACHABLE,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor

if TYPE_CHECKING:
    from treq._types import _ITreqReactor

#: Seconds without any progress after which an operation is abandoned.
STALL_TIMEOUT = 60.0
#: Seconds to open a TCP connection.
CONNECT_TIMEOUT = 30.0
#: The most bytes of a response body kept in memory (listings, XML answers).
BODY_CAP = 16 << 20
#: Bytes read from the local file at a time.
BLOCK_SIZE = 256 << 10
#: The most bytes handed to the kernel per socket write on a destination's
#: connection. Twisted's TCP transport sends at most C{SEND_LIMIT} (128 KiB)
#: per reactor iteration: over HTTPS on a fast link that is two or three
#: iterations and send() calls per body block, which made a WebDAV upload
#: CPU-bound in the client (see docs/benchmarks.md). It only changes how
#: much of what is already buffered goes per call, not how much is buffered.
SEND_LIMIT = 1 << 20

Sink = Callable[[bytes], None]


def treqReactor(reactor: IConnectingReactor) -> _ITreqReactor:
    """
    C{reactor} as treq's hint names it: treq asks for the same three
    interfaces (TCP, time, the name resolver) under a private name of its own.
    """
    return cast("_ITreqReactor", reactor)


class Stall:
    """
    Calls C{expire} once nothing happened for C{timeout} seconds; every
    L{touch} starts the wait again.
    """

    def __init__(self, clock: IReactorTime, timeout: float, expire: Callable[[], None]) -> None:
        self.timeout = timeout
        self.fired = False
        self._expire = expire
        self._call = clock.callLater(timeout, self._fire)

    def _fire(self) -> None:
        self.fired = True
        self._expire()

    def touch(self) -> None:
        if self._call.active():
            self._call.reset(self.timeout)

    def stop(self) -> None:
        if self._call.active():
            self._call.cancel()


@implementer(IBodyProducer)
class FileSliceProducer:
    """
    The bytes C{[offset, offset + length)} of a local file as a request body,
    read block by block while the transport wants more (so memory stays at
    a block or two whatever the size). Each block is handed to C{onBlock}
    (hashing, progress) before it is written.
    """

    def __init__(self, path: str, offset: int, length: int,
                 onBlock: Sink | None = None, cooperator: Any = task,
                 blockSize: int = BLOCK_SIZE) -> None:
        self.path = path
        self.offset = offset
        self.length = length
        self._onBlock = onBlock
        self._cooperate = cooperator.cooperate
        self._blockSize = blockSize
        self._task: Any = None
        self._file: Any = None
        self._stopped = False

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._file = open(self.path, "rb")
        self._file.seek(self.offset)
        self._task = self._cooperate(self._blocks(consumer))
        done: Deferred[None] = self._task.whenDone()

        def ended(result: Any) -> Any:
            self._close()
            if isinstance(result, Failure):
                if result.check(task.TaskStopped):
                    return Deferred()  # IBodyProducer: never fire after stopProducing
                return result
            return None

        return done.addBoth(ended)

    def _blocks(self, consumer: IConsumer) -> Iterator[None]:
        # When stopProducing comes from within this step (onBlock cancelled the
        # request, or the write failed it), the task is already gone from
        # the cooperator: the step must end with a yield, never by returning
        # or raising, which would make the cooperator remove it twice.
        remaining = self.length
        while remaining > 0 and not self._stopped:
            block = self._file.read(min(self._blockSize, remaining))
            if not block:
                raise OSError(f"{self.path} is shorter than expected")
            remaining -= len(block)
            if self._onBlock is not None:
                self._onBlock(block)
            if self._stopped:
                break
            try:
                consumer.write(block)
            except Exception:
                if not self._stopped:
                    raise
            yield None
        if self._stopped:
            yield None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def pauseProducing(self) -> None:
        try:
            self._task.pause()
        except task.TaskFinished:  # the transport pauses after the last block
            pass

    def resumeProducing(self) -> None:
        try:
            self._task.resume()
        except (task.TaskFinished, task.NotPaused):
            pass

    def stopProducing(self) -> None:
        self._stopped = True
        self._close()
        try:
            self._task.stop()
        except task.TaskFinished:
            pass


@implementer(IBodyProducer)
class BytesProducer:
    """A small request body held in memory (XML of a request)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class _BodyReader(Protocol):
    """Feeds a response body to a sink, touching the stall timer."""

    def __init__(self, sink: Sink, stall: Stall | None) -> None:
        self.sink = sink
        self.stall = stall
        self.done: Deferred[None] = Deferred(lambda _: self.abort())
        self.error: BaseException | None = None

    def dataReceived(self, data: bytes) -> None:
        if self.error is not None:
            return
        if self.stall is not None:
            self.stall.touch()
        try:
            self.sink(data)
        except Exception as e:
            self.error = e
            self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.done.called:  # cancelled
            return
        if self.error is not None:
            self.done.errback(Failure(self.error))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(None)
        else:
            self.done.errback(reason)


@frozen
class HTTPResponse:
    """An answer: its status, headers (lowercase names) and body (if collected)."""

    code: int
    phrase: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def quote(self, limit: int = 200) -> str:
        """The start of the body, as text on one line, for messages."""
        text = self.body[:limit * 4].decode("utf-8", "replace")
        return " ".join(text.split())[:limit]


class _Collector:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0

    def __call__(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.cap:
            raise BackupRemoteError(
                DESTINATION_REFUSED,
                f"the server's answer is larger than {self.cap} bytes")
        self.parts.append(data)


class HTTPSession:
    """
    Requests to one HTTP(S) server, with connections kept open between them
    (L{close} closes them).

    @ivar location: where it points, for messages (never a secret).
    """

    def __init__(self, reactor: IConnectingReactor, location: str,
                 auth: tuple[str, str] | None = None,
                 verification: PeerVerification | None = None,
                 timeout: float = STALL_TIMEOUT,
                 connectTimeout: float = CONNECT_TIMEOUT,
                 cooperator: Any = task) -> None:
        self.reactor = reactor
        self.location = location
        self.timeout = timeout
        self.verification = verification or PeerVerification()
        self.cooperator = cooperator
        self._auth = auth
        self._pool = _TrackingPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 8
        self._pool.retryAutomatically = False
        agent = Agent(reactor, contextFactory=self.verification,
                      connectTimeout=connectTimeout, pool=self._pool)
        self._client = treq.client.HTTPClient(agent)

    def fileBody(self, path: str, offset: int, length: int,
                 onBlock: Sink | None = None) -> FileSliceProducer:
        return FileSliceProducer(path, offset, length, onBlock, self.cooperator)

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | IBodyProducer | None = None,
        sink: Sink | None = None,
        cap: int = BODY_CAP,
    ) -> HTTPResponse:
        """
        Send one request and read its whole answer: a successful answer's
        body goes to C{sink} if one is given (and is not kept), any other
        body is kept, up to C{cap} bytes.

        @raise BackupRemoteError: C{DESTINATION_UNREACHABLE},
            C{DESTINATION_IDENTITY_MISMATCH} or C{TIMEOUT} when no answer
            came; an answer of any status is returned.
        """
        if isinstance(body, bytes):
            body = BytesProducer(body)
        stall: Stall | None = None
        reader: _BodyReader | None = None
        pending: Deferred[Any] | None = None

        def expire() -> None:
            if reader is not None:
                reader.abort()
            elif pending is not None:
                pending.cancel()

        if body is not None:
            inner = body

            def touched(block: bytes) -> None:
                if stall is not None:
                    stall.touch()
            body = _TouchingProducer(inner, touched)
        stall = Stall(self.reactor, self.timeout, expire)
        try:
            pending = self._client.request(
                method, url, headers=dict(headers or {}), data=body,
                auth=self._auth, allow_redirects=False, unbuffered=True,
                reactor=treqReactor(self.reactor))
            response: IResponse = await pending
            pending = None
            stall.touch()
            code = response.code
            collector = _Collector(cap)
            reader = _BodyReader(sink if (sink is not None and 200 <= code < 300)
                                 else collector, stall)
            response.deliverBody(reader)
            await reader.done
            return HTTPResponse(
                code, response.phrase.decode("latin-1") if isinstance(response.phrase, bytes)
                else str(response.phrase),
                {k.decode("latin-1").lower(): v[-1].decode("latin-1")
                 for k, v in response.headers.getAllRawHeaders()},
                b"".join(collector.parts))
        except BackupRemoteError:
            raise
        except Exception as e:
            if stall.fired:
                raise BackupRemoteError(
                    TIMEOUT,
                    f"{self.location}: nothing moved for {self.timeout:g} s "
                    f"during {method}; the server may be down or overloaded") from None
            if reader is not None and reader.error is not None:
                raise reader.error from None
            if any(isinstance(cause, CancelledError) for cause in _causes(e)):
                raise CancelledError() from None
            raise self.transportError(e, method) from None
        finally:
            stall.stop()

    def transportError(self, error: BaseException, method: str) -> BackupRemoteError:
        """The registered error for a request that got no complete answer."""
        reasons = _causes(error)
        for reason in reasons:
            described = self.verification.describe(reason, self.location)
            if described is not None:
                return described
        for reason in reasons:
            if isinstance(reason, (ConnectError, ConnectingCancelledError, DNSLookupError)):
                return BackupRemoteError(
                    DESTINATION_UNREACHABLE,
                    f"{self.location} could not be reached: {_short(reason)}")
        return BackupRemoteError(
            DESTINATION_UNREACHABLE,
            f"{self.location}: the connection was lost during {method} "
            f"({_short(reasons[-1] if reasons else error)})")

    def statusError(self, response: HTTPResponse, what: str,
                    notFound: str = DESTINATION_NOT_FOUND) -> BackupRemoteError:
        """The registered error for an unsuccessful answer to C{what}."""
        status = f"HTTP {response.code} {response.phrase}".strip()
        quoted = response.quote()
        said = f": {quoted}" if quoted and response.header("content-type", "").startswith(
            ("text/plain", "application/xml", "text/xml")) else ""
        if response.code == 401:
            return BackupRemoteError(
                DESTINATION_AUTH_FAILED,
                f"{self.location} refused the user name or password ({what}: {status})")
        if response.code == 404:
            return BackupRemoteError(notFound, f"{self.location}: {what}: {status}{said}")
        if response.code in (413, 507):
            return BackupRemoteError(
                DESTINATION_FULL, f"{self.location} is out of space ({what}: {status}){said}")
        if response.code in (502, 503, 504):
            return BackupRemoteError(
                DESTINATION_UNREACHABLE, f"{self.location} is unavailable ({what}: {status})")
        return BackupRemoteError(
            DESTINATION_REFUSED, f"{self.location} refused {what}: {status}{said}")

    async def close(self) -> None:
        """Close the idle connections, and abort any still busy (an interrupted upload)."""
        await self._pool.closeCachedConnections()
        await self._pool.abortAll()


class _TrackingPool(HTTPConnectionPool):
    """
    A pool that also knows its busy connections, so that L{HTTPSession.close}
    leaves none open: after an early error answer to an upload, Twisted keeps
    sending the body on a connection the server no longer reads.
    """

    def __init__(self, reactor: IReactorTime, persistent: bool = True) -> None:
        super().__init__(reactor, persistent)
        self._made: weakref.WeakSet[Any] = weakref.WeakSet()

    def _newConnection(self, key: Any, endpoint: Any) -> Deferred[Any]:
        made = super()._newConnection(key, endpoint)

        def track(protocol: Any) -> Any:
            self._made.add(protocol)
            widenSends(protocol)
            return protocol
        return made.addCallback(track)

    async def abortAll(self) -> None:
        made, self._made = list(self._made), weakref.WeakSet()
        for protocol in made:
            if protocol.state != "CONNECTION_LOST":
                lost = protocol.abort()
                protocol.transport.abortConnection()
                # a connection lost while its TLS was failing may never report it
                lost.addTimeout(1.0, self._reactor).addErrback(lambda _: None)
                await lost


def widenSends(protocol: Any, limit: int = SEND_LIMIT) -> None:
    """
    Let the socket transport under C{protocol} (below its TLS layer, if any)
    send up to C{limit} bytes per write instead of Twisted's 128 KiB.
    """
    transport = getattr(protocol, "transport", None)
    for _ in range(3):  # HTTP protocol -> TLS protocol -> TCP transport
        if isinstance(transport, FileDescriptor):
            transport.SEND_LIMIT = limit
            return
        transport = getattr(transport, "transport", None)


@implementer(IBodyProducer)
class _TouchingProducer:
    """A body producer that reports every block written (stall timer)."""

    def __init__(self, inner: IBodyProducer, onWrite: Sink) -> None:
        self._inner = inner
        self._onWrite = onWrite
        self.length = inner.length

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        return self._inner.startProducing(_TouchingConsumer(consumer, self._onWrite))

    def pauseProducing(self) -> None:
        self._inner.pauseProducing()

    def resumeProducing(self) -> None:
        self._inner.resumeProducing()

    def stopProducing(self) -> None:
        self._inner.stopProducing()


@implementer(IConsumer)
class _TouchingConsumer:
    def __init__(self, consumer: IConsumer, onWrite: Sink) -> None:
        self._consumer = consumer
        self._onWrite = onWrite

    def write(self, data: bytes) -> None:
        self._onWrite(data)
        self._consumer.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self._consumer.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._consumer.unregisterProducer()


def _causes(error: BaseException) -> list[BaseException]:
    """The low-level exceptions inside Twisted's wrapper exceptions."""
    found: list[BaseException] = []
    reasons = getattr(error, "reasons", None)
    if isinstance(reasons, list):
        for reason in reasons:
            found.extend(_causes(reason.value if isinstance(reason, Failure) else reason))
    else:
        found.append(error)
    return found


def _short(error: BaseException) -> str:
    if isinstance(error, CancelledError):
        return "cancelled"
    text = str(error) or type(error).__name__
    return " ".join(text.split())[:200]

