"""
One connection attempt at a time, for the destinations that keep a session
(FTP, FTPS's control channel, SFTP): an operation that needs the session
while it is being made waits for that attempt rather than starting its
own, and each waits through its own Deferred (L{Outcome.when}), so
cancelling one operation never cancels the attempt the others wait for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from backupremote.outcome import Outcome

T = TypeVar("T")


class OneAttempt(Generic[T]):
    """The connection attempt in progress, if any, shared by every operation that needs it."""

    def __init__(self) -> None:
        self._attempt: Outcome[T] | None = None

    def join(self, start: Callable[[], Deferred[T]],
             failed: Callable[[Failure], None] = lambda failure: None) -> Deferred[T]:
        """
        The outcome of the attempt in progress, or of a new one C{start()}
        begins; C{failed} is told (once) when an attempt this began fails.
        """
        attempt = self._attempt
        if attempt is None:
            attempt = self._attempt = Outcome()
            started = attempt

            def settled(result: T | Failure) -> None:
                self._attempt = None
                if isinstance(result, Failure):
                    failed(result)
                    started.fail(result)
                else:
                    started.succeed(result)

            start().addBoth(settled)
        return attempt.when()
