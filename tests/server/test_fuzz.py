"""
Anything a peer can send before authenticating executes nothing, and the
server keeps serving its other clients.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.session import Capabilities, Ping
from backupremote.server.responders.groups import RESPONDER_GROUPS
from tests import strategies
from tests.fixtures import ServerHarness
from tests.server.test_gate import ExplodeResponders, instrument

#: Responders that may run before auth; they must never grant a session.
PRE_AUTH = {b"auth", b"capabilities"}


class PreAuthFuzzTests(SynchronousTestCase):
    def setUp(self) -> None:
        ExplodeResponders.calls = []
        self.harness = ServerHarness(
            self, RESPONDER_GROUPS + (ExplodeResponders,), maxFailedAuthsPerPeer=10**6
        )
        self.bystander = self.harness.connect(peerHost="203.0.113.1")
        self.bystander.auth(self.harness)
        self.port = 0

    def attack(self, stream: bytes) -> Any:
        self.port += 1
        loopback = self.harness.connect(peerHost="198.51.100.66", port=self.port)
        ran = instrument(loopback)
        # the attacker ignores whatever the server answers
        loopback.client.ampBoxReceived = lambda box: None
        loopback.client.transport.write(stream)
        try:
            loopback.pump.flush()
        finally:
            self.flushLoggedErrors()
        self.assertEqual([name for name in ran if name not in PRE_AUTH], [])
        self.assertEqual(ExplodeResponders.calls, [])
        self.assertFalse(loopback.server.session.authenticated)
        # the server still serves an authenticated client, and new ones
        self.bystander.call(Ping)
        self.assertIsNotNone(
            self.harness.connect(port=10**5 + self.port).call(Capabilities)["capabilities"]
        )
        return loopback

    @settings(max_examples=150, deadline=None)
    @given(strategies.boxes())
    def test_arbitraryBoxes(self, box: dict[bytes, bytes]) -> None:
        self.attack(strategies.encodeBox(box))

    @settings(max_examples=150, deadline=None)
    @given(strategies.rawStreams)
    def test_arbitraryBytes(self, stream: bytes) -> None:
        self.attack(stream)

    @settings(max_examples=60, deadline=None)
    @given(strategies.oversizeStreams())
    def test_oversizeAndUnterminatedBoxes(self, stream: bytes) -> None:
        """A box past the pre-auth limit drops that connection, whatever it names."""
        loopback = self.attack(stream)
        self.assertTrue(loopback.closed)
        self.assertIsNone(loopback.server._currentBox)

    def test_oversizedKeyClosesOnlyThatConnection(self) -> None:
        """A key over 255 bytes is a protocol error: that connection is dropped."""
        loopback = self.attack(b"\x01\x00" + b"k" * 256 + b"\x00\x01v\x00\x00")
        self.assertTrue(loopback.closed)
