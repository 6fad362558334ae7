"""
``backupremote run --wait`` as the installed script runs it, against a real
server in this process: ``--json`` streams JSON lines (each run event and
download progress as it comes, the result last); ``--quiet`` prints the
result only; Ctrl-C detaches with a hint that names the same ``--config``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.clientinit import createClientFolder
from tests.client.helpers import startProducingServer
from tests.integration.servers import CLIENT_ID
from tests.integration.test_daemons import program
from tests.processes import interruptible
from tests.server.transfers.helpers import RandomProducer


class RunWaitTests(TestCase):
    timeout = 120

    async def setUpServer(self) -> None:
        self.running = await startProducingServer(self)
        server = self.running.server
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.config = createClientFolder(
            self.folder.child("client"), f"127.0.0.1:{server.port}", CLIENT_ID,
            server.secret.encode("ascii"), server.token, fingerprints=[server.fingerprint])

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("backupremote"), "--config", "client/client.toml", *args],
            cwd=self.folder.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=interruptible)

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
            for stream in (process.stdout, process.stderr):
                assert stream is not None
                stream.close()

        self.addCleanup(stop)
        return process

    async def finished(self, process: subprocess.Popen[str]) -> tuple[int, str, str]:
        for _ in range(1200):
            if process.poll() is not None:
                break
            await deferLater(reactor, 0.05, lambda: None)
        else:
            self.fail("the command did not end")
        assert process.stdout is not None and process.stderr is not None
        return process.returncode, process.stdout.read(), process.stderr.read()

    async def test_jsonLines(self) -> None:
        await self.setUpServer()
        self.running.producer.sizes["w1"] = 3_000_000
        code, out, err = await self.finished(self.start(
            "run", "db", "--run-id", "w1", "--wait", "--download", "backups", "--json"))
        self.assertEqual(code, 0, err)
        lines = [json.loads(line) for line in out.splitlines()]
        *progress, result = lines
        self.assertEqual(result["status"]["state"], "completed")
        self.assertEqual(result["download"]["sizeBytes"], 3_000_000)
        self.assertNotIn("type", result)
        kinds = {line["type"] for line in progress}
        self.assertEqual(kinds, {"runEvent", "downloadProgress"})
        events = [line for line in progress if line["type"] == "runEvent"]
        seqs = [e["seq"] for e in events]
        self.assertEqual(seqs, list(range(seqs[0], seqs[0] + len(seqs))))
        self.assertEqual(events[-1]["kind"], "complete")
        downloads = [line for line in progress if line["type"] == "downloadProgress"]
        self.assertEqual(downloads[-1]["phase"], "done")
        self.assertEqual(downloads[-1]["bytesDone"], 3_000_000)

    async def test_quiet(self) -> None:
        await self.setUpServer()
        code, out, err = await self.finished(self.start("run", "db", "--run-id", "q1",
                                                        "--wait", "-q"))
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(out.splitlines()[0], "run q1: completed")
        self.assertNotIn("started", out)
        self.assertNotIn("done", out)

    async def test_detachedHintNamesTheConfig(self) -> None:
        original = RandomProducer.__call__

        async def slowly(producer: RandomProducer, clock: Any, *args: Any) -> Any:
            await deferLater(reactor, 30, lambda: None)
            return await original(producer, clock, *args)

        self.patch(RandomProducer, "__call__", slowly)
        await self.setUpServer()
        process = self.start("run", "db", "--run-id", "d1", "--wait")
        assert process.stdout is not None
        # never block the reactor: the server the command talks to runs on it
        for _ in range(600):
            if select.select([process.stdout], [], [], 0)[0]:
                break
            await deferLater(reactor, 0.05, lambda: None)
        line = process.stdout.readline()
        await deferLater(reactor, 0.5, lambda: None)  # following the run now
        os.kill(process.pid, signal.SIGINT)
        code, _, err = await self.finished(process)
        self.assertEqual(code, 130)
        self.assertIn("detached; the backup goes on: backupremote --config client/client.toml "
                      "status d1", err)
        self.assertTrue(line.startswith("run d1 started"))
