"""
The connection of a one-shot command (a CLI command that asks the server
something and exits): the same TLS, authentication, attempts and errors as
L{ConnectionManager}, without its reconnecting L{ClientService}, whose
imports (C{twisted.application}, C{automat}, C{twisted.plugin}: about 15 ms
of CPU) were a twentieth of such a command's run (to a server named by
its IP address, both connect with L{DirectTLSEndpoint}).

It connects at the first call, trying up to C{connectAttempts} times with
the reconnecting service's delays between attempts (and the same warning
per failed attempt), keeps that connection for the next calls, connects
again at the next call if it was lost, and is closed by L{stop}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectError
from twisted.internet.task import deferLater

from backupremote.client.connection.manager import TLSServerConnection, retryDelay
from backupremote.client.connection.protocol import ClientProtocol
from backupremote.outcome import Outcome


class OneShotConnection(TLSServerConnection):
    """The connection a one-shot command owns: made when first used, closed by L{stop}."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stopping = False
        self._protocol: ClientProtocol | None = None
        #: the attempts under way, which concurrent calls share
        self._attempts: Outcome[ClientProtocol] | None = None
        #: what to cancel on L{stop}: an attempt, or the wait before the next one
        self._waiting: Deferred[Any] | None = None

    @property
    def running(self) -> bool:
        return not self._stopping

    async def _connect(self) -> ClientProtocol:
        if self._protocol is not None and not self._protocol.lost.called:
            return self._protocol
        attempts = self._attempts
        if attempts is None:
            attempts = self._attempts = Outcome()
            Deferred.fromCoroutine(self._attempt()).addCallbacks(
                attempts.succeed, attempts.fail).addBoth(self._attemptsOver)
        return await attempts.when()

    def _attemptsOver(self, _: Any) -> None:
        self._attempts = None

    async def _attempt(self) -> ClientProtocol:
        """Connect, up to C{connectAttempts} times in a row, waiting between attempts."""
        failures = 0
        while True:
            self._waiting = self.endpoint.connect(self.factory)
            try:
                protocol: ClientProtocol = await self._waiting
                break
            except Exception as error:
                failures += 1
                if failures >= self.config.connectAttempts or self._stopping:
                    if isinstance(error, ConnectError):
                        raise self._unreachable(error) from None
                    raise
            finally:
                self._waiting = None
            self._waiting = deferLater(self.reactor, retryDelay(failures), lambda: None)
            try:
                await self._waiting
            finally:
                self._waiting = None
        self._failedInARow = 0
        self._protocol = protocol
        return protocol

    def _stopConnecting(self) -> Deferred[None]:
        self._stopping = True
        if self._waiting is not None:
            self._waiting.cancel()
        protocol, self._protocol = self._protocol, None
        if protocol is None or protocol.lost.called:
            return succeed(None)
        closed: Deferred[None] = Deferred()

        def tell(result: None) -> None:
            closed.callback(None)
            return result

        protocol.lost.addCallback(tell)
        assert protocol.transport is not None
        protocol.transport.loseConnection()
        return closed
