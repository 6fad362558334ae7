"""
The listening service's start: tool versions are asked once listening, not
in the first runs' preflights, and without holding the listening up.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.service import ListeningService
from tests.fixtures import ServerHarness


class FakePort:
    def getHost(self) -> Any:
        return type("Address", (), {"host": "127.0.0.1", "port": 7443})()

    def stopListening(self) -> None:
        pass


class HeldEndpoint:
    """An endpoint whose listening the test completes."""

    fingerprint = "00"

    def __init__(self) -> None:
        self.listening: Deferred[Any] = Deferred()

    def listen(self, factory: Any) -> Deferred[Any]:
        return self.listening


class ToolWarmUpTests(SynchronousTestCase):
    def test_versionsAskedOnceListening(self) -> None:
        harness = ServerHarness(self)
        asked: list[list[tuple[str, str]]] = []
        warming: Deferred[None] = Deferred()

        async def warm(programs: Any) -> None:
            asked.append(list(programs))
            await warming

        self.patch(harness.core.tools, "warm", warm)
        endpoint = HeldEndpoint()
        service = ListeningService(harness.core, endpoint)  # type: ignore[arg-type]
        service.startService()
        self.assertEqual(asked, [], "listening comes first")
        endpoint.listening.callback(FakePort())
        self.assertEqual(len(asked), 1)
        for program in (("psql", "--version"), ("pg_dump", "--version"),
                        ("pg_restore", "--version"), ("mariadb-dump", "--version"),
                        ("gbak", "-z"), ("zstd", "--version"), ("pigz", "--version")):
            self.assertIn(program, asked[0])
        self.assertIsNotNone(service.toolsWarmed)
        stopped = service.stopService()
        self.assertNoResult(stopped)  # its children are waited for
        warming.callback(None)
        self.successResultOf(stopped)
