"""
``backupremote run --wait`` as the installed script runs it, against a real
server in this process: ``--json`` streams JSON lines (each run event and
download progress as it comes, the result last); ``--quiet`` prints the
result only; Ctrl-C detaches with a hint that names the same ``--config``.

``backupremote schedule run-now NAME --wait`` (no client daemon: the command
drives the job) to real destinations, a local folder and a wsgidav WebDAV
server: the download's and each upload's progress in text, none with
``--json``, whose one document is the run, C{delivered}, with a receipt per
destination whose SHA-256 is the artifact's.
"""

from __future__ import annotations

import hashlib
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
from tests.client.destinations.httpservers import startWsgiDAV
from tests.client.helpers import startProducingServer
from tests.integration.servers import CLIENT_ID
from tests.integration.test_daemons import program
from tests.processes import interruptible
from tests.server.transfers.helpers import RandomProducer


class CommandTestCase(TestCase):
    """The installed C{backupremote} against a producing server in this process."""

    timeout = 120

    async def setUpServer(self) -> None:
        self.running = await startProducingServer(self)
        server = self.running.server
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        self.config = createClientFolder(
            self.folder.child("client"), f"127.0.0.1:{server.port}", CLIENT_ID,
            server.secret.encode("ascii"), server.token, fingerprints=[server.fingerprint])

    def start(self, *args: str, stdin: str | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("backupremote"), "--config", "client/client.toml", *args],
            cwd=self.folder.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            preexec_fn=interruptible)
        if stdin is not None:
            assert process.stdin is not None
            process.stdin.write(stdin)
            process.stdin.close()

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

    async def ok(self, *args: str, stdin: str | None = None) -> str:
        """Run a command to its end (the reactor turning: the server is in this process)."""
        code, out, err = await self.finished(self.start(*args, stdin=stdin))
        self.assertEqual(code, 0, f"{args}: {err}")
        return out


class RunWaitTests(CommandTestCase):

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


class ScheduleRunNowTests(CommandTestCase):
    """C{schedule run-now --wait} delivering to a local folder and to WebDAV."""

    async def setUpDestinations(self) -> None:
        await self.setUpServer()
        self.local = self.folder.child("nas")
        self.local.makedirs()
        await self.ok("dest", "add", "nas", "--type", "local", "--url",
                      "file://" + self.local.path)
        self.dav = startWsgiDAV(self)
        davFolder = self.dav.newFolder()
        self.davRoot = FilePath(self.dav.root).child(davFolder)
        await self.ok("dest", "add", "dav", "--type", "webdav", "--url", self.dav.url(davFolder),
                      "--password-stdin", stdin=self.dav.password + "\n")
        await self.ok("schedule", "add", "nightly", "--db", "db", "--daily", "03:00",
                      "--dest", "nas", "--dest", "dav")

    def assertDelivered(self, run: dict[str, Any]) -> None:
        """Each destination holds the artifact, verified, under its receipt's name."""
        self.assertEqual((run["state"], run["schedule"]), ("delivered", "nightly"))
        self.assertEqual(sorted(r["destination"] for r in run["receipts"]), ["dav", "nas"])
        for receipt in run["receipts"]:
            self.assertEqual((receipt["size"], receipt["sha256"], receipt["method"]),
                             (run["sizeBytes"], run["sha256"], "streamed-sha256"))
            root = self.local if receipt["destination"] == "nas" else self.davRoot
            held = root.preauthChild(receipt["name"]).getContent()
            self.assertEqual(hashlib.sha256(held).hexdigest(), run["sha256"])

    async def test_textShowsProgress(self) -> None:
        """
        Text: the run started, the download's progress to its end, each
        upload (started, then sent and verifying), and the run delivered.
        """
        await self.setUpDestinations()
        out = await self.ok("schedule", "run-now", "nightly", "--wait")
        lines = out.splitlines()
        self.assertIn("of schedule nightly started", lines[0])
        runId = lines[0].split()[1]
        shown = json.loads(await self.ok("runs", "show", runId, "--json"))
        self.assertDelivered(shown)
        artifact = shown["receipts"][0]["name"].split("/")[-1]
        downloads = [line for line in lines if line.startswith(artifact + " ")]
        self.assertGreaterEqual(len(downloads), 2, out)
        self.assertIn("] 100%", downloads[-1])
        self.assertTrue(downloads[-1].endswith("  done"), downloads[-1])
        for name in ("nas", "dav"):
            uploads = [line for line in lines if line.startswith(f"upload {name} ")]
            self.assertGreaterEqual(len(uploads), 2, out)
            self.assertIn("[--", uploads[0])
            self.assertTrue(uploads[-1].endswith(f"as {shown['receipts'][0]['name']}; verifying"),
                            uploads[-1])
            self.assertIn(f"  delivered:    {name}: {shown['receipts'][0]['name']}", out)
        self.assertIn(f"run {runId}: delivered", out)
        self.assertLess(lines.index(downloads[-1]), min(
            i for i, line in enumerate(lines) if line.startswith("upload ")))

    async def test_jsonShowsNoProgress(self) -> None:
        """--json: no progress at all, one JSON document, the run delivered with its receipts."""
        await self.setUpDestinations()
        out = await self.ok("schedule", "run-now", "nightly", "--wait", "--json")
        run = json.loads(out)
        self.assertNotIn("type", run)
        self.assertNotIn("verifying", out)
        self.assertDelivered(run)
        self.assertEqual(run["storedState"], "released")
