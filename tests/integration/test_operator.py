"""
The operator's commands against running daemons, as a user types them:
C{server clients ...} while the server and a client daemon run, and SIGHUP.
"""

from __future__ import annotations

import json
import signal
import subprocess
from typing import Any

from tests.integration.test_daemons import ProgramTestCase, program


class ClientAdministrationTests(ProgramTestCase):
    def capabilities(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [program("backupremote"), "--config", "client/client.toml", "capabilities",
             "--json"], cwd=self.folder.path, capture_output=True, text=True, timeout=60)

    def serverLog(self) -> bytes:
        log = self.folder.descendant(["server", "logs", "server.jsonl"])
        return log.getContent() if log.exists() else b""

    def test_disableClosesLiveConnectionAndResetSecret(self) -> None:
        """
        Disabling a client closes the live connection of its daemon within
        seconds and refuses its auth; enabling lets it in again; a reset
        secret locks out the old one and the new one works.
        """
        self.setUpServerAndClient()
        self.daemon("backupremote-server", "--config", "server/server.toml")
        self.waitFor(lambda: self.capabilities().returncode == 0, "the server to answer")
        self.daemon("backupremote-client", "--config", "client/client.toml")
        clientLog = self.folder.descendant(["client", "logs", "client.jsonl"])
        self.waitFor(lambda: clientLog.exists()
                     and b"connected to server {server}" in clientLog.getContent(),
                     "the client daemon to connect")
        admin = ("--config", "server/server.toml")

        self.cli("server", "clients", "disable", *admin, "laptop")
        self.waitFor(lambda: b"was disabled or removed" in self.serverLog(),
                     "the server to close the disabled client's connection", timeout=20)
        self.waitFor(lambda: b"AUTH_FAILED" in clientLog.getContent(),
                     "the client daemon to be refused")
        refused = self.capabilities()
        self.assertEqual(refused.returncode, 4, refused.stderr)
        self.assertEqual(json.loads(refused.stderr)["errorCode"], "AUTH_FAILED")
        shown: Any = json.loads(self.cli("server", "clients", "show", *admin, "laptop",
                                         "--json").stdout)
        self.assertFalse(shown["enabled"])
        self.assertIsNotNone(shown["lastAuthAt"])

        self.cli("server", "clients", "enable", *admin, "laptop")
        self.assertEqual(self.capabilities().returncode, 0)

        self.cli("server", "clients", "reset-secret", *admin, "laptop",
                 "--secret-file", "new.secret")
        self.assertEqual(self.capabilities().returncode, 4)
        clientSecret = self.folder.descendant(["client", "client.secret"])
        clientSecret.setContent(self.folder.child("new.secret").getContent())
        clientSecret.chmod(0o600)
        answered = self.capabilities()
        self.assertEqual(answered.returncode, 0, answered.stderr)


class HangupTests(ProgramTestCase):
    def test_sighupReopensTheLogFile(self) -> None:
        """
        After logrotate-style renaming, SIGHUP makes the daemon write to a new
        log file at the configured path, and it keeps serving.
        """
        self.setUpServerAndClient()
        server = self.daemon("backupremote-server", "--config", "server/server.toml")
        config = ("--config", "client/client.toml")
        self.waitFor(lambda: subprocess.run(
            [program("backupremote"), *config, "capabilities"], cwd=self.folder.path,
            capture_output=True, timeout=60).returncode == 0, "the server to answer")
        log = self.folder.descendant(["server", "logs", "server.jsonl"])
        rotated = log.siblingExtension(".1")
        log.moveTo(rotated)
        server.send_signal(signal.SIGHUP)
        # the two lines are written one after the other: wait for both, not the first alone
        self.waitFor(lambda: log.exists() and b"reopened the log file" in log.getContent()
                     and b"reloaded the TLS key and certificate" in log.getContent(),
                     "the server to reopen its log file and reload its certificate")
        self.assertIsNone(server.poll())
        self.assertNotIn(b"reopened the log file", rotated.getContent())
        self.cli(*config, "capabilities")
        self.assertIn(b"authenticated", log.getContent())


class RotationTests(ProgramTestCase):
    def test_rotationProcedure(self) -> None:
        """
        docs/operations.md's rotation, as typed: rotate-cert, a client pinning
        both fingerprints, --activate, SIGHUP. The client pinning both is
        served throughout; one pinning only the old fingerprint is refused
        with TLS_FINGERPRINT_MISMATCH once the server offers the new one.
        """
        port, old = self.setUpServerAndClient()
        server = self.daemon("backupremote-server", "--config", "server/server.toml")
        admin = ("--config", "server/server.toml")
        onlyOld = ("--config", "client/client.toml")
        both = ("--config", "both/client.toml")
        self.waitFor(lambda: subprocess.run(
            [program("backupremote"), *onlyOld, "capabilities"], cwd=self.folder.path,
            capture_output=True, timeout=60).returncode == 0, "the server to answer")

        new = json.loads(self.cli("server", "rotate-cert", *admin, "--json").stdout)[
            "pending"]["fingerprint"]
        shown = json.loads(self.cli("server", "fingerprint", *admin, "--json").stdout)
        self.assertEqual(shown["fingerprints"], [old, new])
        self.cli("client", "init", "both", "--server", f"127.0.0.1:{port}",
                 "--fingerprint", old, "--fingerprint", new, "--client-id", "laptop",
                 "--secret-file", "laptop.secret", "--license", "laptop.license")
        self.cli(*both, "capabilities")
        self.cli(*onlyOld, "capabilities")

        self.cli("server", "rotate-cert", *admin, "--activate")
        # activated, not yet reloaded: the server still offers the old certificate
        self.cli(*onlyOld, "capabilities")
        log = self.folder.descendant(["server", "logs", "server.jsonl"])
        server.send_signal(signal.SIGHUP)
        self.waitFor(lambda: new.encode() in log.getContent(),
                     "the server to reload its certificate")

        self.cli(*both, "capabilities")
        refused = self.cli(*onlyOld, "capabilities", "--json", expect=5)
        error = json.loads(refused.stderr)
        self.assertEqual(error["errorCode"], "TLS_FINGERPRINT_MISMATCH")
        self.assertIn(new, error["errorMessage"])
        self.assertIn("backupremote server fingerprint", error["action"])
        self.assertIsNone(server.poll())
