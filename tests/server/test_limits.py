"""
Bounded memory and log space per connection: box limits, caps on
connections without auth, and the summarised log of what they do.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.boxlimits import MAX_PAIR_BYTES, PRE_AUTH, BoxLimit
from backupremote.protocol.commands import COMMANDS
from backupremote.protocol.errors import AUTH_FAILED, AUTH_RATE_LIMITED
from backupremote.protocol.session import Auth, Capabilities, Ping
from backupremote.server.edge.admission import PreAuthAdmission
from backupremote.server.edge.protocol import MAX_PRE_AUTH_BOXES
from tests.fixtures import ServerHarness
from tests.strategies import encodeBox

FULL_VALUE = b"v" * 65535


def pair(key: bytes, value: bytes) -> bytes:
    return len(key).to_bytes(2, "big") + key + len(value).to_bytes(2, "big") + value


def unterminated(keys: int, value: bytes = FULL_VALUE, command: bytes = b"auth") -> bytes:
    """One box that names C{command}, then C{keys} more pairs and no end."""
    return pair(b"_command", command) + b"".join(
        pair(b"k%d" % index, value) for index in range(keys)
    )


class LogCapture:
    """The text of every log event while a test runs."""

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self._observe)
        testCase.addCleanup(globalLogPublisher.removeObserver, self._observe)

    def _observe(self, event: dict[str, Any]) -> None:
        # the server's lines, and AMP's own (the test's client side has its own protocol class)
        if event.get("log_namespace", "").startswith("backupremote.server") or (
            event.get("cls") == "ServerProtocol"
        ):
            self.events.append(event)

    def formats(self) -> list[str]:
        return [event.get("log_format") or "" for event in self.events]


class BoxLimitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ServerHarness(self)
        self.bystander = self.harness.connect(peerHost="203.0.113.1")
        self.bystander.auth(self.harness)

    def test_unterminatedBoxBeforeAuthIsDropped(self) -> None:
        """Past 64 KiB of one box before auth, the connection is aborted and nothing kept."""
        loopback = self.harness.connect(peerHost="198.51.100.66")
        loopback.client.transport.write(unterminated(2))
        loopback.pump.flush()
        self.assertTrue(loopback.closed)
        self.assertIsNone(loopback.server._currentBox)
        # more of the same is not parsed or kept
        loopback.server.dataReceived(unterminated(4))
        self.assertIsNone(loopback.server._currentBox)
        self.assertEqual(loopback.server._unprocessed, b"")
        self.bystander.call(Ping)

    def test_manySmallKeysBeforeAuthAreDropped(self) -> None:
        loopback = self.harness.connect(peerHost="198.51.100.66")
        loopback.client.transport.write(unterminated(PRE_AUTH.maxKeys, b"x"))
        loopback.pump.flush()
        self.assertTrue(loopback.closed)

    def test_smallBoxesBeforeAuthPass(self) -> None:
        loopback = self.harness.connect(peerHost="198.51.100.66")
        self.assertTrue(loopback.call(Capabilities)["capabilities"].apiVersions)
        self.assertFalse(loopback.closed)

    def test_largestLegitimateBoxAfterAuthPasses(self) -> None:
        """An authenticated client may fill every value of the widest command."""
        widest = max(COMMANDS.values(), key=lambda c: len(c.arguments))
        box = {b"_command": widest.commandName, b"_ask": b"1"}
        for name, _ in widest.arguments:
            box[name] = FULL_VALUE
        loopback = self.harness.connect()
        loopback.auth(self.harness)
        answer = loopback.sendBox(box)
        self.assertFalse(loopback.closed)
        self.assertIn(b"_error_code", answer)  # refused as invalid, not as too big

    def test_boxPastTheLimitAfterAuthIsDropped(self) -> None:
        loopback = self.harness.connect()
        loopback.auth(self.harness)
        loopback.client.transport.write(unterminated(self.harness.core.boxLimit.maxKeys))
        loopback.pump.flush()
        self.assertTrue(loopback.closed)
        self.bystander.call(Ping)

    def test_limitFollowsTheContract(self) -> None:
        limit = BoxLimit.forCommands(COMMANDS.values())
        widest = max(len(c.arguments) for c in COMMANDS.values())
        self.assertEqual(limit.maxKeys, widest + 2 + 4)
        self.assertEqual(limit.maxBytes, limit.maxKeys * MAX_PAIR_BYTES)
        self.assertEqual(self.harness.core.boxLimit, limit)

    def test_tooManyBoxesBeforeAuth(self) -> None:
        """Capabilities, again and again, without auth: closed after the cap."""
        loopback = self.harness.connect(peerHost="198.51.100.66")
        loopback.client.ampBoxReceived = lambda box: None
        box = encodeBox({b"_command": b"capabilities", b"_ask": b"1"})
        loopback.client.transport.write(box * (MAX_PRE_AUTH_BOXES + 1))
        loopback.pump.flush()
        self.assertTrue(loopback.closed)


class FakeWaiting:
    def __init__(self, peerHost: str) -> None:
        self.peerHost = peerHost
        self.evicted: list[str] = []

    def evict(self, why: str) -> None:
        self.evicted.append(why)


class AdmissionTests(SynchronousTestCase):
    def test_perPeerCapEvictsThatPeersOldest(self) -> None:
        admission = PreAuthAdmission(maxTotal=10, maxPerPeer=2)
        other = FakeWaiting("192.0.2.1")
        first, second, third = (FakeWaiting("198.51.100.66") for _ in range(3))
        for connection in (other, first, second, third):
            admission.admit(connection)
        self.assertEqual(len(first.evicted), 1)
        self.assertIn("from this address", first.evicted[0])
        self.assertEqual((other.evicted, second.evicted, third.evicted), ([], [], []))
        self.assertEqual(admission.waitingFrom("198.51.100.66"), 2)
        self.assertEqual(len(admission), 3)

    def test_totalCapEvictsTheOldest(self) -> None:
        admission = PreAuthAdmission(maxTotal=2, maxPerPeer=2)
        connections = [FakeWaiting(f"192.0.2.{n}") for n in range(3)]
        for connection in connections:
            admission.admit(connection)
        self.assertEqual([bool(c.evicted) for c in connections], [True, False, False])
        self.assertEqual(len(admission), 2)

    def test_settledConnectionsNoLongerCount(self) -> None:
        admission = PreAuthAdmission(maxTotal=1, maxPerPeer=1)
        first, second = FakeWaiting("192.0.2.1"), FakeWaiting("192.0.2.1")
        admission.admit(first)
        admission.settled(first)
        admission.settled(first)  # twice is harmless
        admission.admit(second)
        self.assertEqual((first.evicted, second.evicted), ([], []))
        self.assertEqual(admission.waitingFrom("192.0.2.1"), 1)


class PreAuthConnectionTests(SynchronousTestCase):
    def test_idleConnectionsMakeRoomForARealClient(self) -> None:
        """Idle connections from one address hold at most their share; a client is served."""
        harness = ServerHarness(self, maxPreAuthConnections=20, maxPreAuthConnectionsPerPeer=5)
        idle = [harness.connect(peerHost="198.51.100.66", port=n) for n in range(100)]
        for loopback in idle:
            loopback.pump.flush()
        self.assertEqual(sum(not loopback.closed for loopback in idle), 5)
        self.assertEqual(harness.core.admission.waitingFrom("198.51.100.66"), 5)
        spread = [harness.connect(peerHost=f"198.51.100.{n}") for n in range(100, 140)]
        for loopback in idle + spread:
            loopback.pump.flush()
        self.assertEqual(sum(not loopback.closed for loopback in idle + spread), 20)
        client = harness.connect(peerHost="192.0.2.10")
        client.auth(harness)
        client.call(Ping)
        self.assertFalse(client.closed)
        # authenticated, it no longer counts, and is never evicted
        for n in range(40):
            harness.connect(peerHost=f"203.0.113.{n}")
        client.call(Ping)
        self.assertFalse(client.closed)


class RefusalLogTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.logs = LogCapture(self)
        self.harness = ServerHarness(self, maxFailedAuthsPerPeer=3)
        self.harness.core.refusals.start()
        self.addCleanup(self.harness.core.refusals.stop)

    def test_bareConnectionsAreSummarised(self) -> None:
        """100 connections that never authenticate: one line now, one summary after a minute."""
        for port in range(100):
            loopback = self.harness.connect(peerHost="198.51.100.66", port=port)
            loopback.client.transport.loseConnection()
            loopback.pump.flush()
        self.assertEqual(len(self.logs.events), 1, self.logs.formats())
        self.harness.clock.advance(60)
        self.assertEqual(len(self.logs.events), 2, self.logs.formats())
        summary = self.logs.events[-1]
        self.assertEqual(summary["total"], 99)
        self.assertEqual(summary["refusals"], {"closed before auth": 99})
        self.assertEqual(summary["peer"], "198.51.100.66")

    def test_refusedCommandsBeforeAuthAreSummarised(self) -> None:
        for port in range(20):
            loopback = self.harness.connect(peerHost="198.51.100.66", port=port)
            loopback.sendBox({b"_command": b"listDatabaseConfigs", b"_ask": b"1"})
        self.harness.clock.advance(60)
        self.assertEqual(len(self.logs.events), 2, self.logs.formats())
        self.assertIn("listDatabaseConfigs refused: AUTH_REQUIRED",
                      self.logs.events[-1]["listed"])

    def test_rateLimitedAttemptsAreNotAudited(self) -> None:
        """Failed auths and the lockout are audited; attempts during the lockout only counted."""
        for port in range(10):
            loopback = self.harness.connect(peerHost="198.51.100.66", port=port)
            code = loopback.error(
                Auth, clientId="alice", secret="wrong", license="x", apiVersion=1,
            ).code
            self.assertIn(code, (AUTH_FAILED, AUTH_RATE_LIMITED))
        trail = [(action, outcome) for _, _, action, outcome in self.harness.store.auditTrail()]
        self.assertEqual(trail, [("auth", AUTH_FAILED)] * 3 + [("auth.lockout", "locked out")])
