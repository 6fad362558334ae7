"""The server's start-up line says what an operator needs: address, fingerprint, data folder."""

from __future__ import annotations

import io

from twisted.logger import eventsFromJSONLogFile, formatEvent
from twisted.trial.unittest import TestCase

from tests.integration.servers import startServer


class StartupLineTests(TestCase):
    async def test_fingerprintAndDataFolder(self) -> None:
        server = await startServer(self)
        content = server.config.logFile.getContent().decode("utf-8")
        lines = [formatEvent(event) for event in eventsFromJSONLogFile(io.StringIO(content))]
        (text,) = [line for line in lines if line.startswith("listening on")]
        self.assertIn(f"127.0.0.1:{server.port} (TLS)", text)
        self.assertIn(f"certificate SHA-256 fingerprint {server.fingerprint}", text)
        self.assertIn(f"data folder {server.config.dataDir.path}", text)
