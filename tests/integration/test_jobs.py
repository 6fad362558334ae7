"""
The job runner across real process deaths: a client (the installed
``backupremote`` script) killed with SIGKILL in the middle of a download,
then taken up by the next command, or by the client daemon at its start.
The server runs in this process (artifacts of random bytes, acknowledged
slowly so that the download lasts long enough to be killed in).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.clientinit import createClientFolder
from backupremote.client.jobs import STATES
from backupremote.protocol.transfers import CHUNK_SIZE, CHUNKS_PER_BOX, WINDOW_BOXES
from backupremote.server.transfers.sender import ChunkSender
from tests.client.helpers import startProducingServer
from tests.integration.servers import CLIENT_ID
from tests.integration.test_daemons import program

MB = 1_000_000
SIZE = 48 * MB
#: seconds each acknowledged box waits on the server: ~20 MB/s
ACK_DELAY = 0.15


class KilledClientTests(TestCase):
    timeout = 240

    async def setUpServer(self) -> None:
        self.running = await startProducingServer(self)
        server = self.running.server
        self.sent = [0]
        acknowledged, sendBox = ChunkSender._acknowledged, ChunkSender._sendBox

        def slowly(sender: ChunkSender, result: object, count: int) -> None:
            reactor.callLater(ACK_DELAY, acknowledged, sender, result, count)

        def counting(sender: ChunkSender, count: int) -> None:
            self.sent[0] += count
            sendBox(sender, count)

        self.patch(ChunkSender, "_acknowledged", slowly)
        self.patch(ChunkSender, "_sendBox", counting)
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.config = createClientFolder(
            self.folder.child("client"), f"127.0.0.1:{server.port}", CLIENT_ID,
            server.secret.encode("ascii"), server.token, fingerprints=[server.fingerprint])
        self.destination = self.folder.child("backups")
        self.running.producer.sizes["k1"] = SIZE

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("backupremote"), "--config", self.config.path, *args],
            cwd=self.folder.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
            for stream in (process.stdout, process.stderr):
                assert stream is not None
                stream.close()

        self.addCleanup(stop)
        return process

    async def waitFor(self, condition: Any, what: str, timeout: float = 60) -> Any:
        for _ in range(int(timeout / 0.05)):
            value = condition()
            if value:
                return value
            await deferLater(reactor, 0.05, lambda: None)
        self.fail(f"timed out waiting for {what}")

    async def finished(self, process: subprocess.Popen[str]) -> tuple[int, str, str]:
        await self.waitFor(lambda: process.poll() is not None, "the command to end", 120)
        assert process.stdout is not None and process.stderr is not None
        return process.returncode, process.stdout.read(), process.stderr.read()

    def job(self) -> dict[str, Any]:
        """The job as the client's store has it (read as another process would)."""
        db = sqlite3.connect(self.folder.descendant(["client", "client.sqlite3"]).path)
        try:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM jobs WHERE runId = 'k1'").fetchone()
            job = dict(row) if row else {}
            job["history"] = [r[0] for r in db.execute(
                "SELECT state FROM job_steps WHERE runId = 'k1' ORDER BY seq")]
            job["receipts"] = db.execute("SELECT count(*) FROM receipts").fetchone()[0]
            return job
        finally:
            db.close()

    def part(self) -> FilePath | None:
        if not self.destination.exists():
            return None
        parts = [c for c in self.destination.children() if c.basename().endswith(".part")]
        return parts[0] if parts else None

    async def killDuringDownload(self) -> FilePath:
        """Run ``run --wait --download --release`` and SIGKILL it a third of the way in."""
        process = self.start("run", "db", "--run-id", "k1", "--wait",
                             "--download", self.destination.path, "--release")
        part = await self.waitFor(
            lambda: (p := self.part()) is not None and p.getsize() >= SIZE // 3 and p,
            "a third of the download")
        os.kill(process.pid, signal.SIGKILL)
        await self.finished(process)
        self.assertEqual(process.returncode, -signal.SIGKILL)
        job = self.job()
        self.assertEqual(job["state"], "completed")  # the download step was not recorded
        self.assertLess(part.getsize(), SIZE)
        return part

    def assertDeliveredOnce(self) -> dict[str, Any]:
        data = self.running.producer.data["k1"]
        files = [c for c in self.destination.children()]
        self.assertEqual(len(files), 1, [f.basename() for f in files])  # no .part left
        self.assertEqual(files[0].getContent(), data)
        job = self.job()
        self.assertEqual(job["state"], "released")
        self.assertEqual(job["history"], list(STATES))
        self.assertFalse(self.running.server.staging.runFolder("k1").exists())
        chunks = -(-len(data) // CHUNK_SIZE)
        # resumed, not fetched again from the start: a window or so sent twice
        self.assertLess(self.sent[0], chunks + 2 * WINDOW_BOXES * CHUNKS_PER_BOX)
        return job

    async def test_killedCommandIsResumedByTheNext(self) -> None:
        await self.setUpServer()
        await self.killDuringDownload()
        process = self.start("download", "k1", self.destination.path, "--release", "--json")
        code, out, err = await self.finished(process)
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertTrue(result["released"])
        self.assertEqual(FilePath(result["path"]).parent(), self.destination)
        self.assertDeliveredOnce()

    async def test_killedCommandIsResumedByTheDaemon(self) -> None:
        await self.setUpServer()
        await self.killDuringDownload()
        daemon = subprocess.Popen(
            [program("twistd"), "-n", "--pidfile=", "backupremote-client", "--config",
             self.config.path], cwd=self.folder.path, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)

        async def stop() -> None:
            # without blocking the reactor: the daemon's TLS goodbye needs the server's
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
                await self.waitFor(lambda: daemon.poll() is not None, "the daemon to stop")
            assert daemon.stdout is not None
            daemon.stdout.close()

        self.addCleanup(stop)
        await self.waitFor(lambda: self.job().get("state") == "released",
                           "the daemon to finish the job", 120)
        self.assertDeliveredOnce()
        log = [json.loads(line.strip(b"\x1e")) for line in self.folder.descendant(
            ["client", "logs", "client.jsonl"]).getContent().splitlines()]
        said = [(e.get("log_format"), e.get("count", e.get("state"))) for e in log
                if e.get("log_namespace") == "backupremote.client.jobs"]
        # one job taken up, its remaining steps logged one by one, and released at the end
        self.assertEqual(said[0], ("taking up {count} unfinished job(s)", 1))
        self.assertEqual(said[-1], ("run {runId}: {state}", "released"))
        self.assertTrue(said[1:-1])
        for format, state in said[1:-1]:
            self.assertEqual(format, "run {runId}: {step} done, {state}")
