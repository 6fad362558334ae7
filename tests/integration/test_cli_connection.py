"""
The installed ``backupremote`` when its server is down: it says so at once,
with the server's address, and Ctrl-C during its retries says it stopped.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess

from tests.integration.test_daemons import ProgramTestCase, program
from tests.processes import interruptible


class ServerDownTests(ProgramTestCase):
    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [program("backupremote"), "--config", "client/client.toml", *args],
            cwd=self.folder.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=interruptible)

        def stop() -> None:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            process.stderr.close()

        self.addCleanup(stop)
        return process

    def firstLine(self, process: subprocess.Popen[str], within: float) -> str:
        ready, _, _ = select.select([process.stderr], [], [], within)
        self.assertTrue(ready, f"nothing on stderr within {within} s")
        return process.stderr.readline()

    def test_refusedAtOnceWithTheAddress(self) -> None:
        port, _ = self.setUpServerAndClient()  # no server started: nothing listens
        config = self.folder.descendant(["client", "client.toml"])
        config.setContent(config.getContent() + b"\n[limits]\nconnect_attempts = 100\n")
        process = self.start("capabilities")
        # "at once": the first refusal is said while the command still has 99 attempts
        # to go (a behaviour, not a stopwatch: a starved machine may take its time)
        line = self.firstLine(process, 60.0)
        self.assertIsNone(process.poll())
        self.assertIn(f"cannot connect to the server at 127.0.0.1:{port}", line)
        self.assertIn("connection refused", line)
        process.kill()
        process.wait()

    def test_givesUpWithTheAddress(self) -> None:
        port, _ = self.setUpServerAndClient()  # no server started: nothing listens
        process = self.start("capabilities")
        self.assertEqual(process.wait(timeout=120), 5)
        rest = process.stderr.read()
        self.assertIn(f"error CONNECTION_FAILED: cannot connect to the server at "
                      f"127.0.0.1:{port}", rest)

    def test_quietAndJSONKeepStderrClean(self) -> None:
        self.setUpServerAndClient()
        for flag in ("--quiet", "--json"):
            done = subprocess.run(
                [program("backupremote"), "--config", "client/client.toml", flag,
                 "capabilities"], cwd=self.folder.path, capture_output=True, text=True,
                timeout=60)
            self.assertEqual(done.returncode, 5)
            self.assertNotIn("note:", done.stderr, flag)

    def test_verboseSaysWhatHappensUnderneath(self) -> None:
        port, _ = self.setUpServerAndClient()
        done = subprocess.run(
            [program("backupremote"), "--config", "client/client.toml", "capabilities", "-v"],
            cwd=self.folder.path, capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 5)
        self.assertIn(f"[warn] cannot connect to the server at 127.0.0.1:{port}", done.stderr)
        self.assertNotIn("note:", done.stderr)

    def test_interruptedWhileRetrying(self) -> None:
        self.setUpServerAndClient()
        # enough attempts that the command is surely still retrying when Ctrl-C comes,
        # however slow a loaded machine is to deliver it
        config = self.folder.descendant(["client", "client.toml"])
        text = config.getContent().decode()
        assert "[limits]" not in text
        config.setContent((text + "\n[limits]\nconnect_attempts = 100\n").encode())
        process = self.start("capabilities")
        self.firstLine(process, 60.0)
        self.assertIsNone(process.poll())
        os.kill(process.pid, signal.SIGINT)
        self.assertEqual(process.wait(timeout=30), 130)
        self.assertEqual(process.stderr.read().strip().splitlines()[-1], "interrupted")
