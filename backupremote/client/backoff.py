"""
Waiting before trying again: exponential backoff with jitter.

    backoff = Backoff(reactor)                       # the download's policy
    answer = await backoff.call(lambda: connection.call(ListFiles, runId=runId))

The n-th consecutive failure waits C{min(maximum, first * 2 ** (n - 1))},
less a random share of it (C{jitter}: 0 waits exactly that, 1 is "full
jitter", anything from 0 up to it), so many clients cut off at once do not
come back in step. Time and randomness are injected: tests pass a C{Clock}
and a fixed random source. Only errors that another try can mend
(L{TRANSIENT}) are retried; any other is raised at once, as is the last one
after C{maxFailures} in a row.
"""

from __future__ import annotations

import random as _random
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

from backupremote.protocol.errors import (
    CAPACITY_EXCEEDED,
    CONNECTION_FAILED,
    TIMEOUT,
    BackupRemoteError,
)

T = TypeVar("T")

#: Errors after which trying again later can help.
TRANSIENT = frozenset({CONNECTION_FAILED, TIMEOUT, CAPACITY_EXCEEDED})


class Backoff:
    """Retries transient failures, waiting longer after each; gives up after C{maxFailures}."""

    def __init__(self, clock: IReactorTime, random: Callable[[], float] | None = None,
                 first: float = 0.5, maximum: float = 30.0, jitter: float = 0.5,
                 maxFailures: int | None = 10,
                 transient: Collection[str] = TRANSIENT) -> None:
        if not 0 <= jitter <= 1:
            raise ValueError("jitter is a share of the delay, from 0 to 1")
        self._clock = clock
        self._random = random or _random.Random().random
        self.first = first
        self.maximum = maximum
        self.jitter = jitter
        #: C{None}: never give up (a daemon's work that must happen some time)
        self.maxFailures = maxFailures
        self.transient = frozenset(transient)
        #: failures since the last success
        self.failures = 0
        #: failures ever (a download reports them as reconnects)
        self.total = 0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the C{failures}-th failure in a row (1 or more)."""
        ceiling = min(self.maximum, self.first * 2 ** min(failures - 1, 64))
        return ceiling * (1 - self.jitter * self._random())

    def retries(self, error: BackupRemoteError) -> bool:
        """Whether L{wait} would wait for C{error} (rather than raise it)."""
        return error.code in self.transient and (
            self.maxFailures is None or self.failures < self.maxFailures)

    def succeeded(self) -> None:
        self.failures = 0

    async def wait(self, error: BackupRemoteError) -> None:
        """Sleep before the next try, or raise C{error} if trying again cannot help."""
        if not self.retries(error):
            raise error
        self.failures += 1
        self.total += 1
        await deferLater(self._clock, self.delay(self.failures), lambda: None)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """C{await operation()} until it succeeds, waiting between tries."""
        while True:
            try:
                result = await operation()
            except BackupRemoteError as error:
                await self.wait(error)
            else:
                self.succeeded()
                return result

