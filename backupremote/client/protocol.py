"""
The client's end of one connection.

On every (re)connect it authenticates at once; C{ready} fires with the
C{auth} answer or fails with the server's error. It answers the server's
keep-alive pings and, once authenticated, pings a quiet server itself.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.protocols import amp

from backupremote.keepalive import Heartbeat
from backupremote.protocol.session import Auth, Ping
from backupremote.protocol.versions import CURRENT_API_VERSION


class ClientProtocol(amp.AMP):
    """AMP towards the server; authenticates as soon as it connects."""

    def __init__(
        self,
        clock: IReactorTime,
        credentials: Any,
        call: Any,
        keepaliveInterval: float = 30.0,
        keepaliveTimeout: float = 20.0,
    ) -> None:
        super().__init__()
        self._clock = clock
        self._credentials = credentials
        self._call = call
        self._heartbeat = Heartbeat(
            clock, ping=lambda: self._call(self, Ping),
            abort=lambda: self.transport.abortConnection(),
            interval=keepaliveInterval, timeout=keepaliveTimeout,
        )
        self.ready: Deferred[dict[str, Any]] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
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
        except BaseException as error:
            if not self.ready.called:
                self.ready.errback(error)
            return
        self._heartbeat.start()
        if not self.ready.called:
            self.ready.callback(answer)

    def dataReceived(self, data: bytes) -> None:
        self._heartbeat.heard()
        super().dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self._heartbeat.stop()
        super().connectionLost(reason)
        if not self.ready.called:
            self.ready.errback(reason)
        self.lost.callback(None)

    @Ping.responder
    def ping(self, requestId: str | None = None) -> dict[str, Any]:
        return {}
