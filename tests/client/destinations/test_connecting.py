"""One connection attempt at a time, shared by the operations that need it."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.destinations.connecting import OneAttempt


class OneAttemptTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.attempts: list[Deferred[str]] = []
        self.failures: list[Failure] = []
        self.connecting: OneAttempt[str] = OneAttempt()

    def start(self) -> Deferred[str]:
        self.attempts.append(Deferred())
        return self.attempts[-1]

    def join(self) -> Deferred[str]:
        return self.connecting.join(self.start, self.failures.append)

    def test_sharedWhileInProgress(self) -> None:
        """Operations during an attempt wait for it; the next one after it starts anew."""
        first, second = self.join(), self.join()
        self.assertEqual(len(self.attempts), 1)
        self.attempts[0].callback("session")
        self.assertEqual((self.successResultOf(first), self.successResultOf(second)),
                         ("session", "session"))
        self.join()
        self.assertEqual(len(self.attempts), 2)

    def test_cancelOneWaitOnly(self) -> None:
        """Cancelling one operation leaves the attempt and the other waits alone."""
        first, second = self.join(), self.join()
        first.cancel()
        self.failureResultOf(first, CancelledError)
        self.assertFalse(self.attempts[0].called)
        self.attempts[0].callback("session")
        self.assertEqual(self.successResultOf(second), "session")

    def test_failureToldOnceAndToEveryone(self) -> None:
        first, second = self.join(), self.join()
        self.attempts[0].errback(ConnectionRefusedError("refused"))
        self.failureResultOf(first, ConnectionRefusedError)
        self.failureResultOf(second, ConnectionRefusedError)
        self.assertEqual(len(self.failures), 1)
        self.join()
        self.assertEqual(len(self.attempts), 2, "a failed attempt is not reused")

    def test_synchronousAttempt(self) -> None:
        """An attempt that settles at once (a cached session) still answers its caller."""
        connecting: OneAttempt[str] = OneAttempt()
        done: Deferred[str] = Deferred()
        done.callback("at once")
        self.assertEqual(self.successResultOf(connecting.join(lambda: done)), "at once")
