"""
A circuit breaker per destination: after N consecutive failures it opens
(no attempt to that destination), after a delay it lets one probe through
(half-open), and the probe's outcome closes or opens it again.
"""

from __future__ import annotations

from attrs import define

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@define
class _Circuit:
    failures: int = 0
    openedAt: float | None = None
    probing: bool = False


class CircuitBreakers:
    """The breakers of every destination, on seconds from an injected clock."""

    def __init__(self, failures: int, delay: float) -> None:
        self.threshold = failures
        self.delay = delay
        self._circuits: dict[str, _Circuit] = {}

    def _circuit(self, key: str) -> _Circuit:
        return self._circuits.setdefault(key, _Circuit())

    def state(self, key: str, now: float) -> str:
        circuit = self._circuit(key)
        if circuit.openedAt is None:
            return CLOSED
        return HALF_OPEN if now >= circuit.openedAt + self.delay else OPEN

    def isOpen(self, key: str) -> bool:
        """Whether C{key}'s breaker is open or half-open (it failed and has not recovered)."""
        circuit = self._circuits.get(key)
        return circuit is not None and circuit.openedAt is not None

    def allows(self, key: str, now: float) -> bool:
        """Whether an attempt to C{key} may start now (one probe at a time when half-open)."""
        state = self.state(key, now)
        return state == CLOSED or (state == HALF_OPEN and not self._circuit(key).probing)

    def started(self, key: str, now: float) -> None:
        if self.state(key, now) == HALF_OPEN:
            self._circuit(key).probing = True

    def succeeded(self, key: str) -> None:
        self._circuits[key] = _Circuit()

    def failed(self, key: str, now: float) -> bool:
        """Count a failure; whether the breaker is (now) open."""
        circuit = self._circuit(key)
        circuit.failures += 1
        if circuit.probing or circuit.failures >= self.threshold:
            circuit.openedAt = now
            circuit.probing = False
            return True
        return False

    def ended(self, key: str) -> None:
        """An attempt ended without a verdict on the destination (a licence refusal)."""
        self._circuit(key).probing = False

    def reopensAt(self, key: str) -> float | None:
        """When an open breaker lets its probe through (C{None}: it is not open)."""
        circuit = self._circuit(key)
        return None if circuit.openedAt is None else circuit.openedAt + self.delay
