"""
The client's end of one connection.

On every (re)connect it authenticates at once; L{ClientProtocol.whenReady} fires with the
C{auth} answer or fails with the server's error. It answers the server's
keep-alive pings and, once authenticated, pings a quiet server itself.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp
from twisted.python.failure import Failure

from backupremote.client.connection.boxparser import LeanBoxParsing
from backupremote.client.connection.receivers import TransferReceivers
from backupremote.keepalive import Heartbeat
from backupremote.protocol.runs import BackupComplete, BackupFailed, BackupProgress, RunEvent
from backupremote.protocol.session import Auth, Ping
from backupremote.protocol.transfers import (
    FileChunk,
    FileTransferAborted,
    FileTransferComplete,
    FileTransferProgress,
)
from backupremote.protocol.versions import CURRENT_API_VERSION
from backupremote.tcptuning import noDelay, readInBlocks


class ClientProtocol(LeanBoxParsing, amp.AMP):
    """AMP towards the server; authenticates as soon as it connects."""

    def __init__(
        self,
        clock: IReactorTime,
        credentials: Any,
        call: Any,
        keepaliveInterval: float = 30.0,
        keepaliveTimeout: float = 20.0,
        onAuthFailure: Any = None,
        onEvent: Any = None,
        onAuthenticated: Any = None,
        transfers: Any = None,
    ) -> None:
        super().__init__()
        #: L{backupremote.client.receivers.TransferReceivers}: where pushed chunks go
        self._transfers = transfers
        self._onEvent = onEvent
        self._onAuthenticated = onAuthenticated
        self._clock = clock
        self._credentials = credentials
        self._call = call
        self._onAuthFailure = onAuthFailure
        self._heartbeat = Heartbeat(
            clock, ping=lambda: Deferred.fromCoroutine(self._call(self, Ping)),
            abort=lambda: self.transport.abortConnection(),
            interval=keepaliveInterval, timeout=keepaliveTimeout,
        )
        self._authOutcome: dict[str, Any] | Failure | None = None
        self._waiting: list[Deferred[dict[str, Any]]] = []
        self.lost: Deferred[None] = Deferred()

    def whenReady(self) -> Deferred[dict[str, Any]]:
        """Fires with the ``auth`` answer, or fails with why there is none."""
        if self._authOutcome is None:
            waiter: Deferred[dict[str, Any]] = Deferred()
            self._waiting.append(waiter)
            return waiter
        if isinstance(self._authOutcome, Failure):
            return fail(self._authOutcome)
        return succeed(self._authOutcome)

    def _settle(self, outcome: dict[str, Any] | Failure) -> None:
        if self._authOutcome is not None:
            return
        self._authOutcome = outcome
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            if isinstance(outcome, Failure):
                waiter.errback(outcome)
            else:
                waiter.callback(outcome)

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        readInBlocks(self.transport)  # a download's chunks arrive in large blocks
        Deferred.fromCoroutine(self._authenticate())

    async def _authenticate(self) -> None:
        credentials = self._credentials
        try:
            answer = await self._call(
                self, Auth,
                clientId=credentials.clientId,
                secret=credentials.secret,
                license=credentials.license,
                apiVersion=CURRENT_API_VERSION,
            )
        except BaseException:
            failure = Failure()
            self._settle(failure)
            if self._onAuthFailure is not None:
                self._onAuthFailure(failure)
            return
        self._heartbeat.start()
        self._settle(answer)
        if self._onAuthenticated is not None:
            self._onAuthenticated(self)

    def dataReceived(self, data: bytes) -> None:
        self._heartbeat.heard()
        super().dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self._heartbeat.stop()
        super().connectionLost(reason)
        self._settle(reason)
        self.lost.callback(None)

    def locateResponder(self, name: bytes) -> Any:
        """Answer only backupremote's commands (not AMP's built-in StartTLS)."""
        if name == b"StartTLS":
            return None
        return super().locateResponder(name)

    def _event(self, event: RunEvent) -> dict[str, Any]:
        if self._onEvent is not None:
            self._onEvent(event)
        return {}

    @BackupProgress.responder
    def backupProgress(self, event: RunEvent) -> dict[str, Any]:
        return self._event(event)

    @BackupComplete.responder
    def backupComplete(self, event: RunEvent) -> dict[str, Any]:
        return self._event(event)

    @BackupFailed.responder
    def backupFailed(self, event: RunEvent) -> dict[str, Any]:
        return self._event(event)

    @Ping.responder
    def ping(self, requestId: str | None = None) -> dict[str, Any]:
        return {}

    def _receivers(self) -> Any:
        if self._transfers is None:
            self._transfers = TransferReceivers()  # receives nothing: refuses every box
        return self._transfers

    @FileChunk.responder
    def fileChunk(self, transferId: str, index: int, chunks: list[bytes]) -> Any:
        return self._receivers().chunk(transferId, index, chunks)

    @FileTransferProgress.responder
    def fileTransferProgress(self, transferId: str, chunksSent: int,
                             bytesSent: int) -> dict[str, Any]:
        return self._receivers().progress(transferId, chunksSent, bytesSent)

    @FileTransferComplete.responder
    def fileTransferComplete(self, transferId: str, sizeBytes: int,
                             sha256: str) -> dict[str, Any]:
        return self._receivers().complete(transferId, sizeBytes, sha256)

    @FileTransferAborted.responder
    def fileTransferAborted(self, transferId: str, errorCode: str,
                            errorMessage: str) -> dict[str, Any]:
        return self._receivers().aborted(transferId, errorCode, errorMessage)
