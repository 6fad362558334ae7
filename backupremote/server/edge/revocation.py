"""
Ending the sessions of clients the operator disabled, removed or gave a new
secret.

The operator changes the store with the CLI (C{backupremote server clients
...}), in another process than the daemon's. The daemon notices in two
places: every command of an authenticated session checks its client first
(L{backupremote.server.edge.protocol}: C{AUTH_FAILED} and the connection closes),
and L{RevocationSweep} closes idle connections within a few seconds.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.server.edge.requestlog import RequestLog

if TYPE_CHECKING:
    from backupremote.server.edge.components import ServerComponents

#: The message a revoked session's next command gets, with C{AUTH_FAILED}.
REVOKED = ("this client was disabled or removed, or its secret was reset, by "
           "the server's operator")

#: Seconds between two sweeps: how long an idle revoked connection may stay.
SWEEP_INTERVAL = 5.0

_log = Logger(namespace="backupremote.server")


def revoke(connection: Any) -> None:
    """Close C{connection}, whose client was revoked, now (logged, counted)."""
    session = connection.session
    session.revoked = True
    RequestLog(str(uuid.uuid4()), session.clientId, session.peer).warn(
        "closing the connection: {why}", why=REVOKED
    )
    connection.core.metrics.increment("auth.revoked")
    connection.transport.abortConnection()


class RevocationSweep(Service):
    """
    Every L{SWEEP_INTERVAL} seconds, close the connections whose client is
    no longer registered and enabled with the secret it authenticated with.
    """

    def __init__(self, core: ServerComponents, clock: IReactorTime,
                 interval: float = SWEEP_INTERVAL) -> None:
        self._core = core
        self._loop = LoopingCall(self.sweep)
        self._loop.clock = clock
        self._interval = interval

    def startService(self) -> None:
        super().startService()
        self._loop.start(self._interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def sweep(self) -> int:
        """Close every revoked connection; how many were closed."""
        try:
            return self._sweep()
        except Exception:
            # e.g. the database is locked for longer than its timeout: next time
            _log.failure("could not check the clients of open connections")
            return 0

    def _sweep(self) -> int:
        verdicts: dict[tuple[str, str | None], bool] = {}
        closed = 0
        for connection in list(self._core.connections):
            session = connection.session
            if not session.authenticated or session.revoked:
                continue
            key = (session.clientId, session.credentialStamp)
            if key not in verdicts:
                verdicts[key] = self._core.authenticator.stillValid(*key)
            if not verdicts[key]:
                revoke(connection)
                closed += 1
        return closed
