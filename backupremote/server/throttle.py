"""Failed authentications counted per peer address, with a lockout."""

from __future__ import annotations

from collections import defaultdict, deque

from twisted.internet.interfaces import IReactorTime


class PeerThrottle:
    """
    Lock a peer address out after C{maxFailures} failed auths within
    C{window} seconds, for C{window} seconds after the last of them.
    """

    def __init__(self, clock: IReactorTime, maxFailures: int, window: float) -> None:
        self._clock = clock
        self.maxFailures = maxFailures
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, peer: str) -> deque[float]:
        failures = self._failures[peer]
        horizon = self._clock.seconds() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[peer]
        return failures

    def retryAfter(self, peer: str) -> float:
        """Seconds until C{peer} may try again; 0 when it is not locked out."""
        failures = self._recent(peer)
        if len(failures) < self.maxFailures:
            return 0.0
        return max(0.0, failures[-1] + self.window - self._clock.seconds())

    def failed(self, peer: str) -> None:
        self._failures[peer].append(self._clock.seconds())
        failures = self._failures[peer]
        while len(failures) > self.maxFailures:
            failures.popleft()
