"""
The client's connection to its server: reconnecting, authenticated, typed.

A L{ClientService} keeps one TLS connection up with exponential backoff;
every new connection authenticates before it is used. L{ConnectionManager.call}
sends a command with a fresh C{requestId} and turns every failure into a
L{BackupRemoteError}: the server's registry code, or a client-side code for
TLS and connection problems.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.internet.protocol import Factory
from twisted.internet.task import deferLater
from twisted.protocols import amp
from twisted.logger import Logger
from twisted.python.failure import Failure

from backupremote.client.config import ClientConfig
from backupremote.client.credentials import Credentials
from backupremote.client.followers import RunFollowers
from backupremote.client.protocol import ClientProtocol
from backupremote.client.receivers import TransferReceivers
from backupremote.protocol.errors import (
    API_VERSION_UNSUPPORTED,
    AUTH_FAILED,
    REGISTRY,
    CONNECTION_FAILED,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.protocol.runs import SubscribeRun
from backupremote.tls.client import clientCreator, describeTLSFailure

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


class ConnectionManager:
    """One authenticated, self-healing connection to the server."""

    def __init__(
        self,
        reactor: Any,
        config: ClientConfig,
        credentials: Credentials,
        creator: Any = None,
        retryPolicy: Any = None,
    ) -> None:
        self._reactor = reactor
        self.config = config
        self._credentials = credentials
        self._creator = creator or clientCreator(
            config.serverName or config.server.host,
            config.fingerprints,
            config.caFile.getContent() if config.caFile else None,
            config.clientCert.getContent() if config.clientCert else None,
            config.readClientKey(),
        )
        endpoint = wrapClientTLS(
            self._creator,
            HostnameEndpoint(reactor, config.server.host, config.server.port),
        )
        factory = Factory.forProtocol(self._buildProtocol)
        self.service = ClientService(
            endpoint, factory,
            retryPolicy=retryPolicy or backoffPolicy(maxDelay=60),
            clock=reactor,
        )
        self.stopped: BackupRemoteError | None = None
        self.followers = RunFollowers()
        self.transfers = TransferReceivers()
        self.reactor = reactor

    def _buildProtocol(self) -> ClientProtocol:
        return ClientProtocol(
            self._reactor, self._credentials, self._callOn,
            self.config.keepaliveInterval, self.config.keepaliveTimeout,
            onAuthFailure=self._authFailed, onEvent=self.followers.deliver,
            onAuthenticated=self._resubscribe, transfers=self.transfers,
        )

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
        if error.code in PERMANENT and self.stopped is None:
            self.stopped = error
            _log.error(
                "the server refused this client: {errorCode}: {errorMessage}; "
                "not reconnecting until restarted. {action}",
                errorCode=error.code, errorMessage=error.message, action=error.action,
            )
            self._reactor.callLater(0, self.stop)

    async def connection(self) -> ClientProtocol:
        """The current authenticated connection, connecting if need be."""
        if self.stopped is not None:
            raise self.stopped
        if not self.service.running:
            self.service.startService()
        try:
            protocol = await self.service.whenConnected(
                failAfterFailures=self.config.connectAttempts
            )
            await protocol.whenReady()
        except BaseException as reason:
            error = asBackupRemoteError(reason, self._creator)
            # Leave the ClientService's state machine before touching it
            # again: this failure is delivered from inside one of its moves.
            await deferLater(self._reactor, 0, lambda: None)
            if error.code in PERMANENT and self.stopped is None:
                self.stopped = error
                await self.stop()
            raise error from None
        return protocol

    async def _callOn(self, protocol: amp.AMP, command: Any, **arguments: Any) -> dict[str, Any]:
        requestId = arguments.pop("requestId", None) or str(uuid.uuid4())
        answer = protocol.callRemote(command, requestId=requestId, **arguments)
        timeout = self._reactor.callLater(self.config.callTimeout, answer.cancel)
        try:
            result = await answer
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
        return self.service.stopService() if self.service.running else succeed(None)
