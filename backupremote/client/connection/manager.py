"""
The client's connection to a server: reconnecting, authenticated, typed.

L{ServerConnection} is everything but how bytes reach the server: each new
connection authenticates before it is used, is kept alive, and follows
again every followed run from the last event it saw; L{ServerConnection.call}
sends a command with a fresh C{requestId} and turns every failure into a
L{BackupRemoteError}: the server's registry code, or a client-side code for
TLS and connection problems. L{TLSServerConnection} adds the real transport,
TLS to the server a L{ClientConfig} names, in two ways:
L{ConnectionManager} keeps it up through a reconnecting L{ClientService},
which it builds and never starts: its owner (the client daemon, a CLI
command that drives a job and may follow a run across reconnects, a
benchmark) starts and stops it, as L{ClientService.running} says;
L{backupremote.client.connection.oneshot.OneShotConnection} connects when
first used and is closed by the CLI command that made it.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import (
    ConnectError,
    ConnectionClosed,
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure
from zope.interface import implementer

from backupremote.client.config import ClientConfig
from backupremote.client.connection.credentials import Credentials
from backupremote.client.connection.direct import DirectTLSEndpoint, isAddress
from backupremote.client.connection.followers import RunFollowers
from backupremote.client.connection.interfaces import IServerConnection
from backupremote.client.connection.protocol import ClientProtocol
from backupremote.client.connection.receivers import TransferReceivers
from backupremote.logcontext import newRequestId
from backupremote.protocol.errors import (
    API_VERSION_UNSUPPORTED,
    AUTH_FAILED,
    CONNECTION_FAILED,
    REGISTRY,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.protocol.runs import SubscribeRun
from backupremote.reactors import IConnectingReactor
from backupremote.tls.client import clientCreator, describeTLSFailure

if TYPE_CHECKING:
    # the daemon's (it notifies): a one-shot command imports none of it
    from backupremote.client.connection.watch import ServerWatch

_log = Logger(namespace="backupremote.client")

#: Server answers after which reconnecting cannot help: stop and say why.
PERMANENT = frozenset(
    {AUTH_FAILED, API_VERSION_UNSUPPORTED}
    | {code for code in REGISTRY if code.startswith(("LICENSE_", "TLS_"))}
)


def asBackupRemoteError(reason: Any, creator: Any = None) -> BackupRemoteError:
    """The registered error for any way a call or connection can fail."""
    error = reason.value if isinstance(reason, Failure) else reason
    if isinstance(error, BackupRemoteError):
        return error
    if isinstance(error, amp.RemoteAmpError):
        return BackupRemoteError.fromDescription(error.errorCode, error.description)
    tls = describeTLSFailure(creator, error) if creator is not None else None
    if tls is not None:
        return tls
    if isinstance(error, CancelledError):
        return BackupRemoteError(TIMEOUT, "the server did not answer in time")
    if isinstance(error, (ConnectError, ConnectionClosed)):
        return BackupRemoteError(
            CONNECTION_FAILED, f"the connection to the server failed: {error}"
        )
    return BackupRemoteError(CONNECTION_FAILED, f"the server could not be used: {error!r}")


def describeConnectError(error: BaseException) -> str:
    """Why a TCP connection could not be made, as a person reads it."""
    if isinstance(error, ConnectionRefusedError):
        return "connection refused (is the server running, and listening on that port?)"
    if isinstance(error, DNSLookupError):
        return "the name does not resolve"
    if isinstance(error, (TCPTimedOutError, TimeoutError)):
        return "no answer (timed out)"
    return str(error) or type(error).__name__


@implementer(IStreamClientEndpoint)
class AttemptsEndpoint:
    """An endpoint that reports each failed connection attempt, as it fails."""

    def __init__(self, endpoint: Any, failed: Any) -> None:
        self._endpoint = endpoint
        self._failed = failed

    def connect(self, factory: Any) -> Deferred[Any]:
        attempt = self._endpoint.connect(factory)

        def report(reason: Failure) -> Failure:
            self._failed(reason.value)
            return reason

        return attempt.addErrback(report)


def notRunning() -> BackupRemoteError:
    return BackupRemoteError(CONNECTION_FAILED, "the connection to the server is not "
                             "running (stopped, or not started by its owner)")


@implementer(IServerConnection)
class ServerConnection:
    """
    An authenticated connection to one server, whatever carries it:
    subclasses say how a connected L{ClientProtocol} is obtained
    (L{_connect}) and whether one may be (L{running}).
    """

    def __init__(self, reactor: IReactorTime, credentials: Credentials,
                 keepaliveInterval: float = 30.0, keepaliveTimeout: float = 20.0,
                 callTimeout: float = 60.0, creator: Any = None) -> None:
        self.reactor = reactor
        self._credentials = credentials
        self._keepalive = (keepaliveInterval, keepaliveTimeout)
        self._callTimeout = callTimeout
        #: the TLS connection creator, to explain TLS failures (if any)
        self._creator = creator
        self.stopped: BackupRemoteError | None = None
        self.followers = RunFollowers()
        self.transfers = TransferReceivers()
        #: told of each failure to reach or log in to the server, and of
        #: each login (the daemon's; C{None}: nobody is told)
        self.watch: ServerWatch | None = None

    # What subclasses provide

    @property
    def running(self) -> bool:
        raise NotImplementedError

    async def _connect(self) -> ClientProtocol:
        """A connected (perhaps not yet authenticated) protocol."""
        raise NotImplementedError

    def _stopConnecting(self) -> Deferred[None]:
        raise NotImplementedError

    # The shared behaviour

    def buildProtocol(self) -> ClientProtocol:
        interval, timeout = self._keepalive
        return ClientProtocol(
            self.reactor, self._credentials, self._callOn, interval, timeout,
            onAuthFailure=self._authFailed, onEvent=self.followers.deliver,
            onAuthenticated=self._authenticated, transfers=self.transfers,
        )

    def _authenticated(self, protocol: ClientProtocol) -> None:
        """A new connection logged in: tell the watch, follow the runs again."""
        if self.watch is not None:
            protocol.whenReady().addCallback(self.watch.authenticated).addErrback(
                lambda failure: _log.failure("the server watch failed", failure))
        self._resubscribe(protocol)

    def _resubscribe(self, protocol: ClientProtocol) -> None:
        """A new connection: ask for what each followed run missed."""
        for follower in self.followers.followed():
            Deferred.fromCoroutine(self._callOn(
                protocol, SubscribeRun, runId=follower.runId, afterSeq=follower.lastSeq,
            )).addErrback(lambda failure, runId=follower.runId: _log.warn(
                "could not follow run {runId} again: {error}", runId=runId,
                error=str(asBackupRemoteError(failure))))

    def _authFailed(self, reason: Failure) -> None:
        """
        An ``auth`` was refused. If retrying cannot help (wrong secret,
        licence, API version), stop reconnecting and keep the reason: every
        later call raises it until the configuration is fixed.
        """
        error = asBackupRemoteError(reason, self._creator)
        if self.watch is not None:
            self.watch.failed(error)
        if error.code in PERMANENT and self.stopped is None:
            self.stopped = error
            _log.error(
                "the server refused this client: {errorCode}: {errorMessage}; "
                "not reconnecting until restarted. {action}",
                errorCode=error.code, errorMessage=error.message, action=error.action,
            )
            self.reactor.callLater(0, self.stop)

    async def connection(self) -> ClientProtocol:
        """The current authenticated connection, connecting if need be."""
        if self.stopped is not None:
            raise self.stopped
        if not self.running:
            raise notRunning()
        try:
            protocol = await self._connect()
            await protocol.whenReady()
        except BaseException as reason:
            error = asBackupRemoteError(reason, self._creator)
            if self.watch is not None and self.running:
                self.watch.failed(error)
            # Leave the connector's state machine before touching it again:
            # this failure may be delivered from inside one of its moves.
            await deferLater(self.reactor, 0, lambda: None)
            if error.code in PERMANENT and self.stopped is None:
                self.stopped = error
                await self.stop()
            raise error from None
        return protocol

    async def _callOn(self, protocol: amp.AMP, command: Any, **arguments: Any) -> dict[str, Any]:
        requestId = arguments.pop("requestId", None) or newRequestId()
        answer = protocol.callRemote(command, requestId=requestId, **arguments)
        timeout = self.reactor.callLater(self._callTimeout, answer.cancel)
        try:
            result = await answer
        except GeneratorExit:
            raise  # the caller's coroutine is being closed: nothing to report
        except BaseException as reason:
            error = asBackupRemoteError(reason, self._creator)
            if error.requestId is None:
                error = BackupRemoteError(error.code, error.message, requestId, error.details)
            raise error from None
        finally:
            if timeout.active():
                timeout.cancel()
        return result

    async def callOn(self, protocol: amp.AMP, command: Any, **arguments: Any
                     ) -> dict[str, Any]:
        """Send C{command} on that connection (a transfer lives on one); raise registry errors."""
        return await self._callOn(protocol, command, **arguments)

    async def call(self, command: Any, **arguments: Any) -> dict[str, Any]:
        """Send C{command} on the authenticated connection; raise registry errors."""
        protocol = await self.connection()
        return await self._callOn(protocol, command, **arguments)

    def stop(self) -> Deferred[None]:
        """Close the connection and stop reconnecting."""
        return self._stopConnecting()


def retryDelay(failures: int, jitter: Callable[[], float] = random.random) -> float:
    """
    Seconds before the next connection attempt after C{failures} in a row:
    Twisted's C{backoffPolicy(maxDelay=60)} (1.5 s, 2.25 s, ... 60 s, plus up
    to 1 s of jitter), written out so a one-shot command needs no
    C{twisted.application}.
    """
    return min(1.5 ** min(100, failures), 60.0) + jitter()


class TLSServerConnection(ServerConnection):
    """
    The TLS connection to the server of a L{ClientConfig}: how it is
    checked (a pinned fingerprint or a CA file), and an endpoint that says
    at once when an attempt fails, and where the server was looked for.
    Subclasses say when to connect (L{ServerConnection._connect}).
    """

    def __init__(
        self,
        reactor: IConnectingReactor,
        config: ClientConfig,
        credentials: Credentials,
        creator: Any = None,
    ) -> None:
        creator = creator or clientCreator(
            config.serverName or config.server.host,
            config.fingerprints,
            config.caFile.getContent() if config.caFile else None,
            config.clientCert.getContent() if config.clientCert else None,
            config.readClientKey(),
        )
        super().__init__(reactor, credentials, config.keepaliveInterval,
                         config.keepaliveTimeout, config.callTimeout, creator)
        self.config = config
        self.address = f"{config.server.host}:{config.server.port}"
        self._failedInARow = 0
        self.endpoint = AttemptsEndpoint(
            self._tlsEndpoint(reactor, config.server.host, config.server.port, creator),
            self._attemptFailed)
        self.factory = Factory.forProtocol(self.buildProtocol)

    def _tlsEndpoint(self, reactor: IConnectingReactor, host: str, port: int,
                     creator: Any) -> IStreamClientEndpoint:
        """
        TLS to C{host}:C{port}: to an IP address straight
        (L{DirectTLSEndpoint}: no resolver thread, no
        C{twisted.internet.endpoints} to import, for a CLI command's
        start-up); a name is resolved by the reactor's resolver.
        """
        if isAddress(host):
            return DirectTLSEndpoint(reactor, host, port, creator)
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        return wrapClientTLS(creator, HostnameEndpoint(reactor, host, port))

    def _attemptFailed(self, error: BaseException) -> None:
        """Say at once that the server cannot be reached, and where it was looked for."""
        if isinstance(error, CancelledError):
            return  # stopped while connecting
        self._failedInARow += 1
        if self.watch is not None:
            self.watch.failed(self._unreachable(error))
        _log.warn("cannot connect to the server at {address}: {reason} "
                  "(failed attempt {failures} in a row; a call gives up after {attempts})",
                  address=self.address, reason=describeConnectError(error),
                  failures=self._failedInARow, attempts=self.config.connectAttempts)

    def _unreachable(self, error: BaseException) -> BackupRemoteError:
        """
        C{CONNECTION_FAILED} with the server's address and why: told to the
        watch at each failed attempt, and raised by a call that gave up.
        """
        return BackupRemoteError(CONNECTION_FAILED, f"cannot connect to the server at "
                                 f"{self.address}: {describeConnectError(error)}")


class ConnectionManager(TLSServerConnection):
    """
    The connection to the server of a L{ClientConfig}: TLS, reconnecting
    with backoff. L{service} is the L{ClientService} that keeps it up; it is
    started by whoever owns this connection (see the module's docstring).
    """

    def __init__(
        self,
        reactor: IConnectingReactor,
        config: ClientConfig,
        credentials: Credentials,
        creator: Any = None,
        retryPolicy: Any = None,
    ) -> None:
        # imported here: twisted.application (~15 ms of imports) has no place
        # in a one-shot command, which imports this module for the base class
        from twisted.application.internet import ClientService

        super().__init__(reactor, config, credentials, creator)
        self.service = ClientService(
            self.endpoint, self.factory, retryPolicy=retryPolicy or retryDelay, clock=reactor,
        )

    @property
    def running(self) -> bool:
        return bool(self.service.running)

    async def _connect(self) -> ClientProtocol:
        try:
            protocol = await self.service.whenConnected(
                failAfterFailures=self.config.connectAttempts)
        except ConnectError as error:
            raise self._unreachable(error) from None
        self._failedInARow = 0
        return protocol

    def _stopConnecting(self) -> Deferred[None]:
        return self.service.stopService() if self.service.running else succeed(None)
