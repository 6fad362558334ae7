"""Waiting, on the real reactor, for a channel to arm a retry on its test Clock."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.task import Clock, deferLater

#: Seconds between two looks, and the most to wait for the real exchange.
_POLL = 0.005
_BOUND = 15.0


async def advanceOnceArmed(clock: Clock, delay: float) -> None:
    """
    Wait until C{clock} holds a call due C{delay} seconds from its now (the
    real network exchange before it happens on the real reactor), then
    advance C{clock} by C{delay}.
    """
    for _ in range(int(_BOUND / _POLL)):
        due = clock.seconds() + delay
        if any(abs(call.getTime() - due) < 1e-6 for call in clock.getDelayedCalls()):
            clock.advance(delay)
            return
        await deferLater(reactor, _POLL, lambda: None)
    raise AssertionError(f"no call was armed {delay:g} s ahead on the clock")
