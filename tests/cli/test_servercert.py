"""
C{backupremote server fingerprint} and C{server rotate-cert}, in-process,
on a server folder made by C{server init}.
"""

from __future__ import annotations

import json
import os

from twisted.python.filepath import FilePath

from backupremote.server.config import loadServerConfig
from backupremote.tls.certificates import (
    fingerprintOfPem,
    generateCertificateAuthority,
    generateServerCertificate,
    issueServerCertificate,
)
from backupremote.tls.server import serverContextFactory
from tests.cli.test_admin import CLITestCase, mode


class CertificateCommandsTests(CLITestCase):
    def setUp(self) -> None:
        self.server = self.serverInit()
        self.config = self.server.child("server.toml").path
        self.tls = self.server.child("tls")
        self.original = fingerprintOfPem(self.tls.child("server.crt").getContent())

    def cmd(self, command: str, *argv: str) -> str:
        return self.ok("server", command, "--config", self.config, *argv)

    def cmdJSON(self, command: str, *argv: str):
        return json.loads(self.cmd(command, *argv, "--json"))

    def refusedCmd(self, command: str, *argv: str) -> str:
        return self.configRefused("server", command, "--config", self.config, *argv)

    def offered(self) -> str:
        """The fingerprint of the pair the server would load now (and the pair matches)."""
        config = loadServerConfig(FilePath(self.config))
        serverContextFactory(config.tlsKey.getContent(), config.tlsCert.getContent())
        return fingerprintOfPem(config.tlsCert.getContent())

    def test_fingerprint(self) -> None:
        shown = self.cmdJSON("fingerprint")
        self.assertEqual(shown["fingerprint"], self.original)
        self.assertEqual(shown["fingerprints"], [self.original])
        self.assertIsNone(shown["pending"])
        self.assertEqual(shown["current"]["names"],
                         ["db1.example", "localhost", "127.0.0.1", "::1"])
        self.assertTrue(shown["current"]["selfSigned"])
        human = self.cmd("fingerprint")
        self.assertIn(f"current certificate: {self.original}", human)
        self.assertNotIn("pending", human)
        # the same fingerprint that server init printed
        self.assertIn(self.original, self.initOutput)

    def test_rotateMakesAPendingPair(self) -> None:
        staged = self.cmdJSON("rotate-cert")
        new = staged["pending"]["fingerprint"]
        self.assertNotEqual(new, self.original)
        self.assertEqual(staged["fingerprints"], [self.original, new])
        self.assertEqual(staged["pending"]["names"],
                         ["db1.example", "localhost", "127.0.0.1", "::1"])
        self.assertEqual(mode(self.tls.child("server.key.pending")), 0o600)
        self.assertEqual(
            fingerprintOfPem(self.tls.child("server.crt.pending").getContent()), new)
        # the server still loads, and offers, the current pair
        self.assertEqual(self.offered(), self.original)
        shown = self.cmdJSON("fingerprint")
        self.assertEqual(shown["fingerprints"], [self.original, new])
        self.assertEqual(shown["pending"]["fingerprint"], new)
        human = self.cmd("fingerprint")
        self.assertIn(f"pending certificate (not offered until activated): {new}", human)
        self.assertIn(f'fingerprints = ["{self.original}", "{new}"]', human)

    def test_rotateHumanSaysWhatNext(self) -> None:
        out = self.cmd("rotate-cert")
        self.assertIn("pin both fingerprints on every client", out)
        self.assertIn(f'fingerprints = ["{self.original}", ', out)
        self.assertIn("--activate", out)
        self.assertIn("SIGHUP", out)

    def test_rotateWithOtherNames(self) -> None:
        staged = self.cmdJSON("rotate-cert", "--hostname", "db2.example", "--days", "30")
        self.assertEqual(staged["pending"]["names"],
                         ["db2.example", "localhost", "127.0.0.1", "::1"])

    def test_activate(self) -> None:
        new = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        activated = self.cmdJSON("rotate-cert", "--activate")
        self.assertEqual(activated["current"]["fingerprint"], new)
        self.assertEqual(activated["previous"]["fingerprint"], self.original)
        self.assertEqual(self.offered(), new)
        self.assertEqual(mode(self.tls.child("server.key")), 0o600)
        self.assertEqual(mode(self.tls.child("server.key.previous")), 0o600)
        self.assertEqual(
            fingerprintOfPem(self.tls.child("server.crt.previous").getContent()), self.original)
        serverContextFactory(self.tls.child("server.key.previous").getContent(),
                             self.tls.child("server.crt.previous").getContent())
        self.assertFalse(self.tls.child("server.key.pending").exists())
        self.assertFalse(self.tls.child("server.crt.pending").exists())
        self.assertEqual(self.cmdJSON("fingerprint")["fingerprints"], [new])

    def test_activateHumanSaysReload(self) -> None:
        self.cmd("rotate-cert")
        out = self.cmd("rotate-cert", "--activate")
        self.assertIn("server.crt.previous", out)
        self.assertIn("SIGHUP", out)

    def test_secondRotationReplacesTheBackup(self) -> None:
        first = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        self.cmd("rotate-cert", "--activate")
        second = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        activated = self.cmdJSON("rotate-cert", "--activate")
        self.assertEqual(activated["previous"]["fingerprint"], first)
        self.assertEqual(self.offered(), second)

    def test_pendingExistsRefused(self) -> None:
        new = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        err = self.refusedCmd("rotate-cert")
        self.assertIn(f"a pending certificate exists already ({new})", err)
        self.assertEqual(self.cmdJSON("fingerprint")["pending"]["fingerprint"], new)

    def test_discard(self) -> None:
        new = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        discarded = self.cmdJSON("rotate-cert", "--discard")
        self.assertEqual(discarded["discarded"]["fingerprint"], new)
        self.assertFalse(self.tls.child("server.key.pending").exists())
        self.assertIsNone(self.cmdJSON("fingerprint")["pending"])
        self.refusedCmd("rotate-cert", "--discard")

    def test_nothingToActivate(self) -> None:
        err = self.refusedCmd("rotate-cert", "--activate")
        self.assertIn("no pending certificate", err)
        self.assertEqual(self.offered(), self.original)

    def test_unusablePendingPairNotActivated(self) -> None:
        """A pending pair whose key is not the certificate's changes nothing."""
        self.cmd("rotate-cert")
        otherKey, _ = generateServerCertificate(["db1.example"])
        pendingKey = self.tls.child("server.key.pending")
        pendingKey.setContent(otherKey)
        pendingKey.chmod(0o600)
        err = self.refusedCmd("rotate-cert", "--activate")
        self.assertIn("does not belong", err)
        self.assertEqual(self.offered(), self.original)
        self.assertFalse(self.tls.child("server.crt.previous").exists())

    def test_expiredPendingNotActivated(self) -> None:
        keyFile, certFile = FilePath(self.mktemp()), FilePath(self.mktemp())
        key, cert = generateServerCertificate(["db1.example"], days=0)
        keyFile.setContent(key)
        certFile.setContent(cert)
        self.cmd("rotate-cert", "--key", keyFile.path, "--cert", certFile.path)
        err = self.refusedCmd("rotate-cert", "--activate")
        self.assertIn("expired", err)
        self.assertEqual(self.offered(), self.original)

    def test_interruptedActivationFinishes(self) -> None:
        """
        If an activation stopped after moving the key, running it again
        completes it instead of leaving a key that does not match.
        """
        new = self.cmdJSON("rotate-cert")["pending"]["fingerprint"]
        for name in ("server.key", "server.crt"):
            self.tls.child(name).copyTo(self.tls.child(name + ".previous"))
        os.replace(self.tls.child("server.key.pending").path, self.tls.child("server.key").path)
        activated = self.cmdJSON("rotate-cert", "--activate")
        self.assertEqual(activated["current"]["fingerprint"], new)
        self.assertEqual(activated["previous"]["fingerprint"], self.original)
        self.assertEqual(self.offered(), new)

    def test_stageACAIssuedPair(self) -> None:
        caKey, caCert = generateCertificateAuthority("Ops CA")
        key, cert = issueServerCertificate(caKey, caCert, ["db1.example"])
        keyFile, certFile = FilePath(self.mktemp()), FilePath(self.mktemp())
        keyFile.setContent(key)
        certFile.setContent(cert)
        staged = self.cmdJSON("rotate-cert", "--key", keyFile.path, "--cert", certFile.path)
        self.assertEqual(staged["pending"]["fingerprint"], fingerprintOfPem(cert))
        self.assertFalse(staged["pending"]["selfSigned"])
        self.assertEqual(mode(self.tls.child("server.key.pending")), 0o600)
        self.cmd("rotate-cert", "--activate")
        self.assertEqual(self.offered(), fingerprintOfPem(cert))
        # a CA-issued certificate is renewed by its CA, not made here
        err = self.refusedCmd("rotate-cert")
        self.assertIn("issued by a CA", err)
        self.assertFalse(self.tls.child("server.crt.pending").exists())

    def test_stagedPairMustMatch(self) -> None:
        key, _ = generateServerCertificate(["db1.example"])
        _, cert = generateServerCertificate(["db1.example"])
        keyFile, certFile = FilePath(self.mktemp()), FilePath(self.mktemp())
        keyFile.setContent(key)
        certFile.setContent(cert)
        self.refusedCmd("rotate-cert", "--key", keyFile.path, "--cert", certFile.path)
        self.assertFalse(self.tls.child("server.key.pending").exists())
        self.refusedCmd("rotate-cert", "--key", self.mktemp(), "--cert", certFile.path)

    def test_optionCombinationsRefused(self) -> None:
        self.refusedCmd("rotate-cert", "--cert", "x.crt")
        self.refusedCmd("rotate-cert", "--activate", "--hostname", "db2.example")
        self.refusedCmd("rotate-cert", "--days", "0")
        self.refused(2, "server", "rotate-cert", "--config", self.config, "--activate",
                     "--discard")
        self.assertFalse(self.tls.child("server.crt.pending").exists())

    def test_missingConfig(self) -> None:
        self.configRefused("server", "fingerprint", "--config", self.mktemp())
