"""Backoff: exponential, with jitter from an injected random source, on an injected clock."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.backoff import TRANSIENT, Backoff
from backupremote.protocol.errors import (
    CONNECTION_FAILED,
    NOT_FOUND,
    TIMEOUT,
    BackupRemoteError,
)


class BackoffTests(SynchronousTestCase):
    def test_delaysDoubleUpToTheMaximum(self) -> None:
        backoff = Backoff(Clock(), random=lambda: 0.0, first=0.5, maximum=30)
        self.assertEqual([backoff.delay(n) for n in range(1, 9)],
                         [0.5, 1, 2, 4, 8, 16, 30, 30])
        self.assertEqual(backoff.delay(10_000), 30)

    def test_jitterTakesARandomShare(self) -> None:
        draws = iter([1.0, 0.5, 0.0])
        half = Backoff(Clock(), random=lambda: next(draws), first=4, jitter=0.5)
        self.assertEqual([half.delay(1), half.delay(1), half.delay(1)], [2.0, 3.0, 4.0])
        full = Backoff(Clock(), random=lambda: 0.75, first=4, jitter=1.0)
        self.assertEqual(full.delay(1), 1.0)
        self.assertRaises(ValueError, Backoff, Clock(), jitter=1.5)

    def test_defaultRandomSpreads(self) -> None:
        backoff = Backoff(Clock(), first=10, jitter=1.0)
        delays = {backoff.delay(1) for _ in range(50)}
        self.assertGreater(len(delays), 40)
        self.assertTrue(all(0 <= d <= 10 for d in delays))

    def test_callRetriesTransientErrorsOnTheClock(self) -> None:
        clock = Clock()
        backoff = Backoff(clock, random=lambda: 0.0, first=1)
        outcomes: list[Any] = [BackupRemoteError(CONNECTION_FAILED, "down"),
                               BackupRemoteError(TIMEOUT, "slow"), "answer"]

        async def operation() -> str:
            outcome = outcomes.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        result = Deferred.fromCoroutine(backoff.call(operation))
        self.assertNoResult(result)
        clock.advance(1)
        self.assertNoResult(result)
        clock.advance(2)
        self.assertEqual(self.successResultOf(result), "answer")
        self.assertEqual((backoff.failures, backoff.total), (0, 2))

    def test_otherErrorsAreRaisedAtOnce(self) -> None:
        backoff = Backoff(Clock())

        async def operation() -> None:
            raise BackupRemoteError(NOT_FOUND, "no")

        failure = self.failureResultOf(Deferred.fromCoroutine(backoff.call(operation)))
        self.assertEqual(failure.value.code, NOT_FOUND)
        self.assertNotIn(NOT_FOUND, TRANSIENT)

    def test_givesUpAfterMaxFailuresUnlessNone(self) -> None:
        clock = Clock()
        error = BackupRemoteError(CONNECTION_FAILED, "down")
        limited = Backoff(clock, random=lambda: 0.0, maxFailures=2)
        for _ in range(2):
            waiting = Deferred.fromCoroutine(limited.wait(error))
            clock.advance(60)
            self.successResultOf(waiting)
        self.assertFalse(limited.retries(error))
        self.failureResultOf(Deferred.fromCoroutine(limited.wait(error)), BackupRemoteError)
        forever = Backoff(clock, maxFailures=None)
        forever.failures = 10_000
        self.assertTrue(forever.retries(error))
