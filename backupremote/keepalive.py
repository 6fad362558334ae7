"""
Keep-alive for long-lived AMP connections, used by both sides.

A quiet connection is pinged so that idle TLS and NAT state stay up during a
long backup; a peer that stays silent past the timeout is aborted so that
half-open sockets do not pile up.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall


class Heartbeat:
    """Ping after C{interval} seconds of silence; abort after C{timeout} more."""

    def __init__(
        self,
        clock: IReactorTime,
        ping: Callable[[], Any],
        abort: Callable[[], None],
        interval: float,
        timeout: float,
    ) -> None:
        self._clock = clock
        self._ping = ping
        self._abort = abort
        self.interval = interval
        self.timeout = timeout
        self._lastHeard = clock.seconds()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock

    def start(self) -> None:
        self._lastHeard = self._clock.seconds()
        self._loop.start(min(self.interval, self.timeout) / 2, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def heard(self) -> None:
        """Any byte from the peer proves it alive."""
        self._lastHeard = self._clock.seconds()

    def _tick(self) -> None:
        silence = self._clock.seconds() - self._lastHeard
        if silence >= self.interval + self.timeout:
            self.stop()
            self._abort()
        elif silence >= self.interval:
            result = self._ping()
            if hasattr(result, "addErrback"):
                result.addErrback(lambda _: None)
