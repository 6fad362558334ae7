"""
Artifact downloads through the real server and client over TLS on 127.0.0.1,
with artifacts made by a producer of random bytes (no database needed).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import sqlite3
from argparse import Namespace
from typing import Any

from attrs import evolve
from twisted.internet import reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.cli.output import Output
from backupremote.cli.runs import runCommand
from backupremote.cli.transfers import downloadCommand, filesCommand, releaseCommand
from backupremote.client.jobs import jobRunnerIn, oneServer
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol import errors
from backupremote.protocol.databases import DatabaseConfigInput, PreflightReport
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.transfers import FileTransferStart
from backupremote.server.service import makeService
from backupremote.tcptuning import RECEIVE_BLOCK, socketTransport
from tests.databases.servers import ROW_COUNT, TABLE, startSQLite
from tests.integration import servers
from tests.server.transfers.helpers import RandomProducer, folderNames

MB = 1_000_000


class TransferTests(TestCase):
    timeout = 120

    async def setUpServer(self) -> None:
        self.producer = RandomProducer()
        self.patch(servers, "makeService", functools.partial(makeService, produce=self.producer))
        roots = FilePath(self.mktemp())
        roots.makedirs()
        self.server = await servers.startServer(self, sqliteRoots=(roots,))
        self.patchPreflight()
        self.client = self.server.client(self, connectAttempts=1)
        database = roots.child("db.sqlite3")
        database.setContent(b"")
        self.configId = (await self.client.createDatabaseConfig(DatabaseConfigInput(
            name="db", engine="sqlite", path=database.path))).id

    def patchPreflight(self) -> None:
        async def preflight(configId: str, options: Any) -> PreflightReport:
            return PreflightReport(ok=True, blockers=[], warnings=[], sizeEstimate=1000)

        self.patch(self.server.core.databases, "preflight", preflight)

    async def stage(self, runId: str, size: int) -> Any:
        self.producer.sizes[runId] = size
        await self.client.executeBackup(runId, self.configId)
        final = await self.client.followRun(runId)
        self.assertEqual(final.state, "completed")
        return final

    async def restartServer(self) -> None:
        """Stop the server and start a new one on the same port, data and staging."""
        old = self.server.service
        await old.stopService()
        config = evolve(self.server.config, listen=f"ssl:{self.server.port}:interface=127.0.0.1")
        new = makeService(config, reactor, produce=self.producer, staging=self.server.staging)
        new.startService()
        self.addCleanup(new.stopService)
        await new.getServiceNamed("listener").whenListening()
        self.server.service = new
        self.patchPreflight()

    async def test_downloadAndRelease(self) -> None:
        await self.setUpServer()
        await self.stage("r1", 5 * MB + 7)
        folder = FilePath(self.mktemp())
        seen: list[Any] = []
        path = await self.client.download("r1", folder, seen.append)
        self.assertEqual(path.getContent(), self.producer.data["r1"])
        self.assertEqual(folderNames(folder), [path.basename()])
        self.assertEqual(seen[-1].phase, "done")
        self.assertEqual(folderNames(self.server.staging.runs), ["r1"])
        self.assertTrue(await self.client.releaseArtifact("r1"))
        self.assertEqual(folderNames(self.server.staging.runs), [])
        error = await self.assertFailure(self.client.listFiles("r1"), BackupRemoteError)
        self.assertEqual(error.code, errors.ARTIFACT_EXPIRED)

    async def test_largeSocketBlocksForTheStream(self) -> None:
        """
        The client reads its connection in RECEIVE_BLOCK pieces (the real TCP
        transport under TLS), the server keeps Twisted's reads and sends,
        and the file arrives whole.
        """
        await self.setUpServer()
        await self.stage("r1", 3 * MB)
        path = await self.client.download("r1", FilePath(self.mktemp()))
        self.assertEqual(path.getContent(), self.producer.data["r1"])
        client = socketTransport((await self.client.connection.connection()).transport)
        self.assertIsInstance(client, tcp.Client)
        self.assertEqual(client.bufferSize, RECEIVE_BLOCK)
        sending = [socketTransport(protocol.transport)
                   for protocol in self.server.core.connections]
        self.assertEqual([type(transport) for transport in sending], [tcp.Server])
        self.assertEqual((sending[0].SEND_LIMIT, sending[0].bufferSize),
                         (tcp.Server.SEND_LIMIT, tcp.Server.bufferSize))
        self.assertGreater(RECEIVE_BLOCK, tcp.Client.bufferSize)

    async def test_serverRestartBetweenChunks(self) -> None:
        await self.setUpServer()
        await self.stage("big", 60 * MB)
        folder = FilePath(self.mktemp())
        connection = self.client.connection
        original = connection.transfers.chunk
        restarted: list[Deferred[None]] = []
        received = [0]

        def chunk(transferId: str, index: int, chunks: list[bytes]) -> Any:
            received[0] += len(chunks)
            if received[0] >= 200 and not restarted:
                restarted.append(Deferred.fromCoroutine(self.restartServer()))
            return original(transferId, index, chunks)

        self.patch(connection.transfers, "chunk", chunk)
        starts: list[int] = []
        callOn = connection.callOn

        async def counting(protocol: Any, command: Any, **arguments: Any) -> Any:
            if command is FileTransferStart:
                starts.append(arguments["startChunk"])
            return await callOn(protocol, command, **arguments)

        self.patch(connection, "callOn", counting)
        seen: list[Any] = []
        path = await self.client.download("big", folder, seen.append)
        await restarted[0]
        self.assertEqual(path.getContent(), self.producer.data["big"])
        self.assertEqual(len(starts), 2, starts)
        self.assertGreater(starts[1], 150)
        self.assertGreaterEqual(seen[-1].reconnects, 1)

    async def test_twoClientsAtOnce(self) -> None:
        await self.setUpServer()
        await self.stage("shared", 20 * MB)
        other = self.server.client(self)
        folders = [FilePath(self.mktemp()), FilePath(self.mktemp())]
        first = self.client.download("shared", folders[0])
        second = other.download("shared", folders[1])
        for path in (await first, await second):
            self.assertEqual(path.getContent(), self.producer.data["shared"])

    async def test_releaseDuringDownloadThenExpiry(self) -> None:
        await self.setUpServer()
        await self.stage("gone", 30 * MB)
        await self.stage("old", MB)
        connection = self.client.connection
        original = connection.transfers.chunk
        releases: list[Deferred[bool]] = []

        def chunk(transferId: str, index: int, chunks: list[bytes]) -> Any:
            if not releases:  # the transfer is active: release now
                releases.append(self.client.releaseArtifact("gone"))
            return original(transferId, index, chunks)

        self.patch(connection.transfers, "chunk", chunk)
        path = await self.client.download("gone", FilePath(self.mktemp()))
        self.assertTrue(await releases[0])
        self.assertEqual(path.getContent(), self.producer.data["gone"])
        await deferLater(reactor, 0, lambda: None)
        self.assertEqual(folderNames(self.server.staging.runs), ["old"])
        artifacts = self.server.core.artifacts
        artifacts._staged["old"].manifest = evolve(artifacts._staged["old"].manifest,
                                                   expiresAt=artifacts._now())
        artifacts.expire()
        self.assertEqual(folderNames(self.server.staging.runs), [])

    def jobRunner(self) -> Any:
        """The job runner a CLI command builds, over a client folder of this test's."""
        folder = FilePath(self.mktemp())
        store = SQLiteClientStore.inFolder(folder, reactor)
        self.addCleanup(store.close)
        return jobRunnerIn(reactor, folder, store, oneServer(self.client))

    async def test_cli(self) -> None:
        await self.setUpServer()
        await self.stage("c1", 3 * MB)
        out = io.StringIO()
        output = Output(False, out, io.StringIO())
        self.assertEqual(await filesCommand(self.client, Namespace(run_id="c1"), output), 0)
        self.assertIn("sha256", out.getvalue())
        folder = self.mktemp()
        out = io.StringIO()
        output = Output(True, out, io.StringIO())
        runner = self.jobRunner()
        self.assertEqual(await downloadCommand(
            self.client, runner, Namespace(run_id="c1", directory=folder, release=False, serverName="default"),
            output, reactor), 0)
        result = json.loads(out.getvalue())
        self.assertEqual(FilePath(result["path"]).getContent(), self.producer.data["c1"])
        self.assertFalse(result["released"])
        out = io.StringIO()
        human = Output(False, out, io.StringIO())
        self.assertEqual(await downloadCommand(
            self.client, runner, Namespace(run_id="c1", directory=folder, release=True, serverName="default"),
            human, reactor), 0)
        self.assertIn("released", out.getvalue())
        out = io.StringIO()
        self.assertEqual(await releaseCommand(self.client, Namespace(run_id="c1"),
                                              Output(True, out, io.StringIO())), 0)
        self.assertEqual(json.loads(out.getvalue()), {"runId": "c1", "released": False})

    async def test_runWaitDownload(self) -> None:
        await self.setUpServer()
        self.producer.sizes["w1"] = 2 * MB
        out = io.StringIO()
        options = dict.fromkeys(["format", "compression", "level", "threads", "checksum",
                                 "verification", "post_script", "timeout"])
        args = Namespace(id=self.configId, run_id="w1", wait=True, cancel_on_interrupt=False,
                         serverName="default",
                         download=self.mktemp(), release=True, **options)
        self.assertEqual(await runCommand(self.client, self.jobRunner(), args,
                                          Output(True, out, io.StringIO()), reactor), 0)
        *progress, last = out.getvalue().splitlines()  # --json --wait: JSON lines
        self.assertTrue(progress)
        self.assertTrue(all("type" in json.loads(line) for line in progress))
        result = json.loads(last)
        self.assertEqual(result["status"]["state"], "completed")
        self.assertTrue(result["download"]["released"])
        self.assertEqual(FilePath(result["download"]["path"]).getContent(),
                         self.producer.data["w1"])
        self.assertEqual(folderNames(self.server.staging.runs), [])


class RealRunTests(TestCase):
    """A real SQLite backup through the pipeline, then downloaded and opened."""

    timeout = 120

    async def test_runThenDownload(self) -> None:
        database = await startSQLite(self)
        server = await servers.startServer(
            self, sqliteRoots=(FilePath(database.path).parent(),))
        client = server.client(self)
        created = await client.createDatabaseConfig(DatabaseConfigInput(
            name="shop", engine="sqlite", path=database.path))
        await client.executeBackup("real-1", created.id, BackupOptions(compression="zstd"))
        final = await client.followRun("real-1")
        self.assertEqual(final.state, "completed", final)
        path = await client.download("real-1", FilePath(self.mktemp()))
        self.assertEqual(path.basename(), final.artifact.name)
        manifest = await client.listFiles("real-1")
        self.assertEqual(hashlib.sha256(path.getContent()).hexdigest(), manifest.files[0].sha256)
        restored = FilePath(self.mktemp())
        restored.setContent(zstandard(path))
        connection = sqlite3.connect(restored.path)
        try:
            count = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0]
        finally:
            connection.close()
        self.assertEqual(count, ROW_COUNT)
        self.assertTrue(await client.releaseArtifact("real-1"))
        self.assertEqual(folderNames(server.staging.runs), [])


def zstandard(path: FilePath) -> bytes:
    import subprocess
    return subprocess.run(["zstd", "-dc", path.path], check=True, capture_output=True).stdout
