"""
A real server in this process for the client's tests: TLS on 127.0.0.1,
artifacts of random bytes made at once (no database tool runs), a SQLite
configuration named ``db`` ready to back up.
"""

from __future__ import annotations

import functools
import tempfile
from typing import Any

from attrs import define
from twisted.python.filepath import FilePath

from backupremote.client.connection import Credentials
from backupremote.protocol.databases import DatabaseConfigInput, PreflightReport
from backupremote.server.edge.protocol import ServerProtocol
from backupremote.server.service import makeService
from backupremote.testing import LoopbackConnection
from tests.integration import servers
from tests.server.transfers.helpers import RandomProducer


@define
class ProducingServer:
    server: servers.RunningServer
    producer: RandomProducer
    configId: str

    def loopback(self, reactor: Any, secret: str | None = None) -> LoopbackConnection:
        """The in-memory twin of a connection to this same server core."""
        running = self.server
        return LoopbackConnection(
            reactor, Credentials(servers.CLIENT_ID, secret or running.secret, running.token),
            lambda: ServerProtocol(running.core, "127.0.0.1:50000", "127.0.0.1"))


async def startProducingServer(testCase: Any) -> ProducingServer:
    temp = FilePath(testCase.mktemp())
    temp.makedirs()
    testCase.patch(tempfile, "tempdir", temp.path)  # the staging goes in the test's folder
    producer = RandomProducer()
    testCase.patch(servers, "makeService", functools.partial(makeService, produce=producer))
    roots = FilePath(testCase.mktemp())
    roots.makedirs()
    server = await servers.startServer(testCase, sqliteRoots=(roots,))

    async def preflight(configId: str, options: Any) -> PreflightReport:
        return PreflightReport(ok=True, blockers=[], warnings=[], sizeEstimate=1000)

    testCase.patch(server.core.databases, "preflight", preflight)
    database = roots.child("db.sqlite3")
    database.setContent(b"")
    client = server.client(testCase)
    configId = (await client.createDatabaseConfig(DatabaseConfigInput(
        name="db", engine="sqlite", path=database.path))).id
    await client.close()
    return ProducingServer(server, producer, configId)
