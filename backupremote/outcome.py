"""
A result that several waiters can await, each through its own Deferred.

Awaiting a shared Deferred is fragile here: cancelling the run cancels
whatever Deferred it awaits, which would fire that shared Deferred with
C{CancelledError} for everyone (a child's end, a thread's result) while the
work behind it goes on. Each L{Outcome.when} call gives a fresh Deferred,
so a cancel only ever cancels one wait.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


class Outcome(Generic[T]):
    """The eventual value (or failure) of some work."""

    def __init__(self) -> None:
        self.done = False
        self._result: Any = None
        self._waiters: list[Deferred[T]] = []

    def succeed(self, value: T) -> None:
        self._finish(value)

    def fail(self, failure: Failure) -> None:
        self._finish(failure)

    def _finish(self, result: Any) -> None:
        if self.done:
            return
        self.done = True
        self._result = result
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._deliver(waiter)

    @property
    def failure(self) -> Failure | None:
        """The failure, once done, if it failed."""
        return self._result if isinstance(self._result, Failure) else None

    @property
    def value(self) -> T:
        """The value, once done (raises the failure's exception if it failed)."""
        if not self.done:
            raise RuntimeError("not done yet")
        if isinstance(self._result, Failure):
            self._result.raiseException()
        value: T = self._result
        return value

    def when(self) -> Deferred[T]:
        """A new Deferred firing with the outcome; cancelling it cancels only this wait."""
        waiter: Deferred[T] = Deferred(lambda d: self._forget(d))
        if self.done:
            self._deliver(waiter)
        else:
            self._waiters.append(waiter)
        return waiter

    def _forget(self, waiter: Deferred[T]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    def _deliver(self, waiter: Deferred[T]) -> None:
        if isinstance(self._result, Failure):
            waiter.errback(self._result)
        else:
            waiter.callback(self._result)
