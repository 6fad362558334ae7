"""Keep-alive and the auth deadline, on a fake clock."""

from __future__ import annotations

from twisted.protocols import amp
from twisted.trial.unittest import SynchronousTestCase

from backupremote.keepalive import Heartbeat
from backupremote.protocol.session import Ping
from tests.fixtures import ServerHarness


class PingCounter(amp.AMP):
    pings = 0

    @Ping.responder
    def ping(self, requestId: str | None = None) -> dict:
        PingCounter.pings += 1
        return {}


class HeartbeatTests(SynchronousTestCase):
    def setUp(self) -> None:
        from twisted.internet.task import Clock
        self.clock = Clock()
        self.pings: list[float] = []
        self.aborted: list[float] = []
        self.beat = Heartbeat(
            self.clock, ping=lambda: self.pings.append(self.clock.seconds()),
            abort=lambda: self.aborted.append(self.clock.seconds()),
            interval=30, timeout=20,
        )
        self.beat.start()

    def test_quietPeerIsPingedThenAborted(self) -> None:
        self.clock.pump([5] * 12)
        self.assertEqual(self.pings, [30, 40])
        self.assertEqual(self.aborted, [50])
        self.clock.pump([5] * 10)
        self.assertEqual(self.aborted, [50])

    def test_talkingPeerIsLeftAlone(self) -> None:
        for _ in range(100):
            self.clock.advance(10)
            self.beat.heard()
        self.assertEqual((self.pings, self.aborted), ([], []))


class ServerKeepaliveTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ServerHarness(self, keepaliveInterval=30, keepaliveTimeout=20,
                                     authTimeout=1e6)

    def test_idleClientIsPingedAndStaysUp(self) -> None:
        """A live but quiet client answers pings: an hour idle, still connected."""
        loopback = self.harness.connect()
        loopback.client.__class__ = PingCounter
        PingCounter.pings = 0
        loopback.auth(self.harness)
        for _ in range(360):
            self.harness.clock.advance(10)
            loopback.pump.flush(advanceClock=False)
        self.assertFalse(loopback.closed)
        self.assertGreater(PingCounter.pings, 50)

    def test_deadPeerIsAborted(self) -> None:
        """A peer that stops reading and answering is aborted after interval + timeout."""
        loopback = self.harness.connect()
        loopback.auth(self.harness)
        transport = loopback.server.transport
        for _ in range(4):
            self.harness.clock.advance(15)   # nothing is pumped: the peer is gone
        self.assertTrue(transport.disconnecting)
        loopback.pump.flush()
        self.assertTrue(loopback.closed)
        self.assertNotIn(loopback.server, self.harness.core.connections)


class AuthDeadlineTests(SynchronousTestCase):
    def test_unauthenticatedConnectionIsClosed(self) -> None:
        harness = ServerHarness(self, authTimeout=30, keepaliveInterval=1e6)
        idle = harness.connect(port=1)
        authed = harness.connect(port=2)
        authed.auth(harness)
        harness.clock.advance(31)
        idle.pump.flush()
        authed.pump.flush()
        self.assertTrue(idle.closed)
        self.assertFalse(authed.closed)
