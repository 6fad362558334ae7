"""Authentication attempts that overlap while secrets are being hashed."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.session import Auth
from tests.fixtures import CLIENT_ID, SECRET, ServerHarness


class SlowHashing:
    """A C{runInThread} whose work finishes only when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Deferred[Any], Any, tuple[Any, ...]]] = []

    def __call__(self, function: Any, *args: Any) -> Deferred[Any]:
        deferred: Deferred[Any] = Deferred()
        self.waiting.append((deferred, function, args))
        return deferred

    def finishAll(self) -> None:
        waiting, self.waiting = self.waiting, []
        for deferred, function, args in waiting:
            deferred.callback(function(*args))


class AuthRaceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.hashing = SlowHashing()
        self.harness = ServerHarness(self, runInThread=self.hashing)

    def authBox(self, ask: bytes, secret: str = SECRET) -> dict[bytes, bytes]:
        return {
            b"_command": b"auth", b"_ask": ask, b"clientId": CLIENT_ID.encode(),
            b"secret": secret.encode(), b"license": self.harness.license().encode(),
            b"apiVersion": b"1",
        }

    def test_oneAuthAtATimePerConnection(self) -> None:
        """A second auth while the first is being checked is refused, not raced."""
        loopback = self.harness.connect()
        answers: list[Any] = []
        loopback.client.ampBoxReceived = answers.append
        for ask in (b"1", b"2", b"3"):
            loopback.client.transport.write(amp.AmpBox(self.authBox(ask)).serialize())
        loopback.pump.flush()
        self.assertEqual(len(self.hashing.waiting), 1)
        self.assertEqual([a[b"_error_code"] for a in answers],
                         [b"ALREADY_AUTHENTICATED", b"ALREADY_AUTHENTICATED"])
        self.hashing.finishAll()
        loopback.pump.flush()
        self.assertEqual(answers[-1][b"_answer"], b"1")
        self.assertTrue(loopback.server.session.authenticated)

    def test_concurrentAttemptsCountAgainstThePeerLimit(self) -> None:
        """Attempts in flight count, so a burst cannot exceed the per-peer limit."""
        limit = self.harness.config.maxFailedAuthsPerPeer
        outcomes: list[list[Any]] = []
        for port in range(limit + 3):
            loopback = self.harness.connect(peerHost="198.51.100.9", port=port)
            outcome: list[Any] = []
            loopback.client.callRemote(
                Auth, clientId=CLIENT_ID, secret="wrong", license="x", apiVersion=1,
            ).addBoth(outcome.append)
            outcomes.append(outcome)
            loopback.pump.flush()
        self.assertEqual(len(self.hashing.waiting), limit)
        refused = [o[0].value for o in outcomes if o]
        self.assertEqual(len(refused), 3)
        for failure in refused:
            self.assertEqual(
                BackupRemoteError.fromDescription(failure.errorCode, failure.description).code,
                errors.AUTH_RATE_LIMITED,
            )


class ClosingWithoutAnswersTests(SynchronousTestCase):
    def test_violationsWithoutAskStillClose(self) -> None:
        harness = ServerHarness(self)
        loopback = harness.connect()
        for _ in range(harness.config.maxViolationsPerConnection):
            self.assertIsNone(loopback.sendBox({b"_command": b"ping"}))
        self.assertTrue(loopback.closed)


class DenialLogTests(SynchronousTestCase):
    def test_licenceDenialLineCarriesRequestAndPeer(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        harness = ServerHarness(self)
        loopback = harness.connect(peerHost="192.0.2.77", port=5555)
        error = loopback.error(Auth, clientId=CLIENT_ID, secret=SECRET,
                               license=harness.license(clientId="bob"), apiVersion=1,
                               requestId="req-42")
        self.assertEqual(error.code, errors.LICENSE_CLIENT_MISMATCH)
        denials = [e for e in events if e.get("licenseCode")]
        self.assertEqual(len(denials), 1)
        self.assertEqual((denials[0]["requestId"], denials[0]["peer"]),
                         ("req-42", "192.0.2.77:5555"))
