"""Failed authentications counted per peer address, with a lockout."""

from __future__ import annotations

from collections import Counter, defaultdict, deque

from twisted.internet.interfaces import IReactorTime


class PeerThrottle:
    """
    Lock a peer address out after C{maxFailures} failed auths within
    C{window} seconds, for C{window} seconds after the last of them.

    An attempt counts from the moment it starts (L{attempt}) until it is
    settled (L{failed} or L{succeeded}), so a burst of concurrent attempts
    cannot slip past the limit while their hashes are being computed.
    """

    def __init__(self, clock: IReactorTime, maxFailures: int, window: float) -> None:
        self._clock = clock
        self.maxFailures = maxFailures
        self.window = window
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._pending: Counter[str] = Counter()

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
        if len(failures) + self._pending[peer] < self.maxFailures:
            return 0.0
        if not failures:
            return 1.0
        return max(1.0, failures[-1] + self.window - self._clock.seconds())

    def attempt(self, peer: str) -> bool:
        """Start an attempt from C{peer}; C{False} if it is locked out."""
        if self.retryAfter(peer):
            return False
        self._pending[peer] += 1
        return True

    def _settle(self, peer: str) -> None:
        self._pending[peer] -= 1
        if self._pending[peer] <= 0:
            del self._pending[peer]

    def succeeded(self, peer: str) -> None:
        self._settle(peer)

    def failed(self, peer: str) -> None:
        self._settle(peer)
        failures = self._failures[peer]
        failures.append(self._clock.seconds())
        while len(failures) > self.maxFailures:
            failures.popleft()
