"""The client pings a quiet server once authenticated."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.connection.credentials import Credentials
from backupremote.client.connection.protocol import ClientProtocol
from tests.fixtures import CLIENT_ID, SECRET, ServerHarness


class ClientPingTests(SynchronousTestCase):
    def test_quietServerIsPinged(self) -> None:
        harness = ServerHarness(self, keepaliveInterval=1e6, authTimeout=1e6)
        pings: list[Any] = []

        async def call(protocol: Any, command: Any, **arguments: Any) -> Any:
            if command.commandName == b"ping":
                pings.append(harness.clock.seconds())
            return await protocol.callRemote(command, **arguments)

        client = ClientProtocol(harness.clock, Credentials(CLIENT_ID, SECRET, harness.license()),
                                call, keepaliveInterval=30, keepaliveTimeout=20)
        loopback = harness.connect(client=client)
        self.assertEqual(self.successResultOf(client.whenReady())["apiVersion"], 1)
        for _ in range(12):
            harness.clock.advance(10)
            loopback.pump.flush(advanceClock=False)
        self.assertTrue(pings)
        self.assertFalse(loopback.closed)
