"""
Waiting for several parts of a stage at once.

A stage is over when all its parts (children, threads) are; but once one
part has failed, the others usually follow within moments (a dead
compressor makes the dump fail on a broken pipe), so the stage waits only a
short grace for them, to name the first cause, before it gives up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime

from backupremote.outcome import Outcome

#: Seconds to wait for the other parts once one has failed.
FAILURE_GRACE = 2.0

#: Seconds to wait for parts to end after they were stopped and killed.
STOP_WAIT = 15.0

#: Seconds between two kills of what is still running while waiting for it.
RETRY_INTERVAL = 0.5


def anyOf(reactor: IReactorTime, outcomes: Sequence[Outcome[Any]],
          timeout: float | None = None) -> Deferred[None]:
    """
    Fires (with C{None}) as soon as one of C{outcomes} is settled, or after
    C{timeout} seconds; cancelling it stops waiting for all of them.
    """
    waiters: list[Deferred[Any]] = []
    timer: list[Any] = []
    fired: list[bool] = []

    def release() -> None:
        fired.append(True)
        for waiter in waiters:
            waiter.cancel()
        if timer and timer[0].active():
            timer[0].cancel()

    wake: Deferred[None] = Deferred(lambda _: release())

    def settled(_: object) -> None:
        if not fired:
            release()
            wake.callback(None)

    for outcome in outcomes:
        if fired:
            break
        waiter = outcome.when()
        waiters.append(waiter)
        waiter.addBoth(settled)
    if timeout is not None and not fired:
        timer.append(reactor.callLater(max(timeout, 0.0), settled, None))
    return wake


async def waitForAll(reactor: IReactorTime, outcomes: Sequence[Outcome[Any]],
                     failed: Callable[[Outcome[Any]], bool],
                     grace: float = FAILURE_GRACE) -> None:
    """
    Return when every outcome is settled, or C{grace} seconds after the
    first one that C{failed}.
    """
    deadline: float | None = None
    while True:
        pending = [outcome for outcome in outcomes if not outcome.done]
        if not pending:
            return
        if deadline is None and any(outcome.done and failed(outcome) for outcome in outcomes):
            deadline = reactor.seconds() + grace
        if deadline is not None and reactor.seconds() >= deadline:
            return
        await anyOf(reactor, pending,
                    None if deadline is None else deadline - reactor.seconds())


async def waitQuietly(reactor: IReactorTime, outcomes: Callable[[], list[Outcome[Any]]],
                      again: Callable[[], None], timeout: float = STOP_WAIT) -> None:
    """
    Wait until C{outcomes()} is empty, at most C{timeout} seconds, calling
    C{again()} (kill once more) every L{RETRY_INTERVAL} meanwhile; a cancel
    does not cut the wait short (it is the cleanup of a cancel).
    """
    deadline = reactor.seconds() + timeout
    while outcomes() and reactor.seconds() < deadline:
        try:
            await anyOf(reactor, outcomes(), min(RETRY_INTERVAL, deadline - reactor.seconds()))
        except CancelledError:
            continue
        again()
