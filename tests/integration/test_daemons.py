"""
The installed programs, as a user runs them: the ``backupremote`` script,
``twistd backupremote-server`` and ``twistd backupremote-client``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.config import loadServerConfig
from backupremote.server.machinery.timeslice import REACTOR_SLICE_NS, sliceOf
from backupremote.server.state.store import ServerStore
from tests.processes import installEndlessZstd, runningWithArgv

BIN = os.path.dirname(sys.executable)


def program(name: str) -> str:
    return os.path.join(BIN, name)


def freePort() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ProgramTestCase(SynchronousTestCase):
    """Runs the installed programs in a temp folder; stops every daemon after."""

    def setUp(self) -> None:
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()

    def cli(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [program("backupremote"), *args], cwd=self.folder.path,
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(done.returncode, expect, done.stderr + done.stdout)
        self.assertNotIn("Traceback", done.stderr)
        return done

    def daemon(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("twistd"), "-n", "--pidfile=", *args], cwd=self.folder.path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=None if env is None else os.environ | env,
        )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
            process.stdout.close()

        self.addCleanup(stop)
        return process

    def setUpServerAndClient(self) -> tuple[int, str]:
        port = freePort()
        self.cli("license", "keygen", "issuer")
        init = json.loads(self.cli(
            "server", "init", "server", "--listen", f"ssl:{port}:interface=127.0.0.1",
            "--trust-issuer", "issuer/issuer.pub", "--json").stdout)
        self.cli("server", "add-client", "--config", "server/server.toml", "laptop",
                 "--secret-file", "laptop.secret")
        self.cli("license", "issue", "--issuer-key", "issuer/issuer.key",
                 "--client-id", "laptop", "--days", "7", "--out", "laptop.license")
        self.cli("client", "init", "client", "--server", f"127.0.0.1:{port}",
                 "--fingerprint", init["fingerprint"], "--client-id", "laptop",
                 "--secret-file", "laptop.secret", "--license", "laptop.license")
        return port, init["fingerprint"]

    def waitFor(self, condition: Any, what: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            time.sleep(0.2)
        self.fail(f"timed out waiting for {what}")



class InstalledProgramsTests(ProgramTestCase):
    def test_installedDropinAndScript(self) -> None:
        """The installed distribution carries the dropin (without __init__) and the script."""
        files = {str(f) for f in metadata.files("backupremote") or ()}
        self.assertIn("twisted/plugins/backupremote_plugins.py", files)
        self.assertNotIn("twisted/plugins/__init__.py", files)
        scripts = {e.name for e in metadata.entry_points(group="console_scripts")
                   if e.value.startswith("backupremote")}
        self.assertEqual(scripts, {"backupremote"})
        listed = subprocess.run([program("twistd"), "--help"], cwd=tempfile.gettempdir(),
                                capture_output=True, text=True, timeout=60).stdout
        self.assertIn("backupremote-server", listed)
        self.assertIn("backupremote-client", listed)

    def test_userFlowAgainstTwistdServer(self) -> None:
        """README steps 1-3: init, licence, register, serve with twistd, capabilities."""
        port, fingerprint = self.setUpServerAndClient()
        server = self.daemon("backupremote-server", "--config", "server/server.toml")

        def capabilities() -> Any:
            done = subprocess.run(
                [program("backupremote"), "--config", "client/client.toml",
                 "capabilities", "--json"],
                cwd=self.folder.path, capture_output=True, text=True, timeout=60)
            return json.loads(done.stdout) if done.returncode == 0 else None

        answer = self.waitFor(capabilities, "the server to answer")
        self.assertEqual(answer["apiVersions"], [1])
        self.assertIn("remote.control", answer["offer"]["features"])

        wrong = self.folder.child("client").child("client.toml")
        wrong.setContent(wrong.getContent().replace(
            fingerprint.encode(), ("00:" * 31 + "00").encode()))
        refused = self.cli("--config", "client/client.toml", "capabilities", expect=5)
        self.assertIn("TLS_FINGERPRINT_MISMATCH", refused.stderr)
        self.assertIn(fingerprint, refused.stderr)
        self.assertIn("what to do:", refused.stderr)

        # the daemon's reactor thread asked for its short CPU time slice (Linux 6.12+)
        slice = sliceOf(server.pid)
        server.send_signal(signal.SIGTERM)
        # twistd re-raises the signal it stopped for once it has shut down cleanly
        self.assertEqual(server.wait(timeout=30), -signal.SIGTERM)
        self.assertIn("Server Shut Down.", server.stdout.read())
        log = self.folder.descendant(["server", "logs", "server.jsonl"]).getContent()
        self.assertIn(b"authenticated", log)
        granted = b"the reactor thread runs with a {slice} us CPU time slice" in log
        self.assertTrue(granted or b"keeps its default CPU time slice" in log)
        self.assertEqual(granted, b'"slice": 100' in log)
        self.assertEqual(slice == REACTOR_SLICE_NS, granted)
        self.assertNotIn(self.folder.child("laptop.secret").getContent().strip(), log)

    def test_clientDaemonAuthenticatesWithTwistd(self) -> None:
        self.setUpServerAndClient()
        self.daemon("backupremote-server", "--config", "server/server.toml")
        self.daemon("backupremote-client", "--config", "client/client.toml")
        config = loadServerConfig(self.folder.descendant(["server", "server.toml"]))

        def authenticated() -> bool:
            store = ServerStore.inDataDir(config.dataDir)
            try:
                return ("laptop", "auth", "ok") in [
                    (c, a, o) for c, _, a, o in store.auditTrail()]
            finally:
                store.close()

        self.waitFor(authenticated, "the client daemon to authenticate")
        clientLog = self.folder.descendant(["client", "logs", "client.jsonl"])
        self.waitFor(lambda: clientLog.exists() and b"connected to server {server}" in clientLog.getContent(),
                     "the client daemon to log its connection")

    def test_demo(self) -> None:
        """
        `backupremote demo` runs the whole job: the artifact lands verified in
        ./backups/, and nothing else is left behind (no folder, no process).
        """
        import sqlite3
        import subprocess as sp

        self.runDemo(sqlite3, sp)

    def runDemo(self, sqlite3: Any, sp: Any) -> None:
        before = set(glob.glob(os.path.join(tempfile.gettempdir(), "backupremote-demo-*")))
        staged = os.path.join(tempfile.gettempdir(), f"backupremote-{os.getuid()}", "runs-*")
        runsBefore = set(glob.glob(staged))
        done = self.cli("demo", "--size-mb", "12", "--json")
        summary = json.loads(done.stdout)
        artifact = summary["artifact"]
        delivered = FilePath(artifact["path"])
        self.assertEqual(delivered.parent().path, self.folder.child("backups").path)
        self.assertEqual([c.basename() for c in delivered.parent().children()],
                         [artifact["name"]])
        data = delivered.getContent()
        self.assertEqual(hashlib.sha256(data).hexdigest(), artifact["digest"])
        self.assertEqual(len(data), artifact["sizeBytes"])
        self.assertGreater(summary["compressionRatio"], 1.5)
        restored = self.folder.child("restored.sqlite3")
        restored.setContent(sp.run(["zstd", "-dc", delivered.path], capture_output=True,
                                   check=True).stdout)
        with sqlite3.connect(restored.path) as db:
            self.assertGreater(db.execute("select count(*) from orders").fetchone()[0], 10000)
            self.assertEqual(db.execute("pragma integrity_check").fetchone()[0], "ok")
        after = set(glob.glob(os.path.join(tempfile.gettempdir(), "backupremote-demo-*")))
        self.assertEqual(after - before, set())
        self.assertEqual(set(glob.glob(staged)) - runsBefore, set())  # no staging folder left
        self.assertIn("dump", summary["serverStages"])
        self.assertIn("download", summary["clientSteps"])


class DatabaseCommandsTests(ProgramTestCase):
    """The `db` and `preflight` commands against a twistd server, as a user types them."""

    def test_databaseCommands(self) -> None:
        import sqlite3

        port, _ = self.setUpServerAndClient()
        databases = self.folder.child("databases")
        databases.makedirs()
        dbFile = databases.child("notes.sqlite3")
        with sqlite3.connect(dbFile.path) as db:
            db.execute("create table notes (id integer primary key, body text)")
            db.executemany("insert into notes (body) values (?)", [("x" * 100,)] * 500)
        serverToml = self.folder.descendant(["server", "server.toml"])
        serverToml.setContent(serverToml.getContent()
                              + f'\n[databases]\nsqlite_roots = ["{databases.path}"]\n'.encode())
        self.daemon("backupremote-server", "--config", "server/server.toml")
        config = ("--config", "client/client.toml")

        def added() -> Any:
            done = subprocess.run(
                [program("backupremote"), *config, "db", "add", "notes", "--engine", "sqlite",
                 "--path", dbFile.path, "--compression", "gzip", "--json"],
                cwd=self.folder.path, capture_output=True, text=True, timeout=60)
            return json.loads(done.stdout) if done.returncode == 0 else None

        created = self.waitFor(added, "the server to store the configuration")
        self.assertEqual(created["backup"]["compression"], "gzip")
        listed = json.loads(self.cli(*config, "db", "list", "--json").stdout)
        self.assertEqual([c["id"] for c in listed], [created["id"]])
        shown = self.cli(*config, "db", "show", created["id"]).stdout
        self.assertIn("notes  (sqlite", shown)
        # a name works wherever an id does
        tested = json.loads(self.cli(*config, "db", "test", "notes", "--json").stdout)
        self.assertTrue(tested["ok"])
        self.assertGreater(tested["sizeBytes"], 0)
        report = json.loads(self.cli(*config, "preflight", "notes", "--json").stdout)
        self.assertTrue(report["ok"], report)
        metrics = json.loads(self.cli(*config, "metrics", "--json").stdout)
        self.assertGreaterEqual(metrics["counters"]["auth.succeeded"], 5)
        self.assertEqual((metrics["runsRunning"], metrics["runsQueued"]), (0, 0))
        self.assertIn("runs: 0 running, 0 queued", self.cli(*config, "metrics").stdout)
        unknown = self.cli(*config, "db", "test", "no-such-db", expect=6)
        self.assertIn("NOT_FOUND", unknown.stderr)
        self.assertIn("no database configuration has the id or name 'no-such-db'",
                      unknown.stderr)
        updated = json.loads(self.cli(*config, "db", "update", created["id"],
                                      "--compression", "zstd", "--json").stdout)
        self.assertEqual((updated["version"], updated["backup"]["compression"]), (2, "zstd"))
        stale = self.cli(*config, "db", "update", created["id"], "--version", "1",
                         "--level", "3", expect=6)
        self.assertIn("CONFLICT", stale.stderr)
        outside = self.cli(*config, "db", "add", "passwd", "--engine", "sqlite",
                           "--path", "/etc/passwd", expect=6)
        self.assertIn("VALIDATION_FAILED", outside.stderr)
        self.assertIn("path", outside.stderr)
        missing = self.cli(*config, "db", "test", "--engine", "sqlite", "--path",
                           databases.child("nope.sqlite3").path, expect=6)
        self.assertIn("DATABASE_NOT_FOUND", missing.stdout)
        self.cli(*config, "db", "remove", created["id"])
        self.assertEqual(json.loads(self.cli(*config, "db", "list", "--json").stdout), [])


class CrashRecoveryTests(ProgramTestCase):
    def test_killedServerMarksRunInterrupted(self) -> None:
        """
        A server killed mid-run (SIGKILL) and started again reports the run
        failed/INTERRUPTED, and its staging folder is gone; its dump died with it.
        """
        import sqlite3

        self.setUpServerAndClient()
        databases = self.folder.child("databases")
        databases.makedirs()
        dbFile = databases.child("notes.sqlite3")
        with sqlite3.connect(dbFile.path) as db:
            db.execute("create table notes (body text)")
        tools = self.folder.child("tools")
        tools.makedirs()
        endless = installEndlessZstd(tools)
        serverToml = self.folder.descendant(["server", "server.toml"])
        serverToml.setContent(serverToml.getContent() + (
            f'\n[databases]\nsqlite_roots = ["{databases.path}"]\n'
            f'tool_path = ["{tools.path}", "/usr/bin", "/bin"]\n').encode())
        temp = self.folder.child("tmp")
        temp.makedirs()
        env = {"TMPDIR": temp.path}
        server = self.daemon("backupremote-server", "--config", "server/server.toml", env=env)
        config = ("--config", "client/client.toml")

        def added() -> Any:
            done = subprocess.run(
                [program("backupremote"), *config, "db", "add", "notes", "--engine", "sqlite",
                 "--path", dbFile.path, "--json"],
                cwd=self.folder.path, capture_output=True, text=True, timeout=60)
            return json.loads(done.stdout) if done.returncode == 0 else None

        created = self.waitFor(added, "the server to store the configuration")
        started = json.loads(self.cli(*config, "run", created["id"], "--run-id", "crash-1",
                                      "--compression", "zstd", "--json").stdout)
        # answered once recorded, with a free slot: its pipeline starts just after
        self.assertEqual((started["state"], started["queuePosition"]), ("queued", None))
        from backupremote.server.staging import StagingArea
        runDir = StagingArea.forDataDir(self.folder.descendant(["server", "data"]),
                                        temp).runFolder("crash-1")
        self.waitFor(lambda: os.path.exists(runDir.path), "the run's staging folder")
        server.kill()
        server.wait(timeout=30)
        self.waitFor(lambda: not runningWithArgv(endless),
                     "the dump of the killed server to die with it")
        self.daemon("backupremote-server", "--config", "server/server.toml", env=env)

        def status() -> Any:
            done = subprocess.run(
                [program("backupremote"), *config, "status", "crash-1", "--json"],
                cwd=self.folder.path, capture_output=True, text=True, timeout=60)
            return json.loads(done.stdout) if done.returncode == 0 else None

        final = self.waitFor(status, "the restarted server to answer")
        self.assertEqual((final["state"], final["errorCode"]), ("failed", "INTERRUPTED"))
        self.assertFalse(os.path.exists(runDir.path))

