"""
The local CLI commands, run in-process through L{backupremote.cli.main.main}:
C{license keygen/issue/show}, C{server init/add-client} and C{client init}.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import stat
from unittest.mock import patch

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.main import buildParser, main
from backupremote.client.config import loadClientConfig
from backupremote.license import loadIssuerKey, loadTrustedKey
from backupremote.server.config import loadServerConfig
from backupremote.server.state.secrethash import verifySecret
from backupremote.server.state.store import ServerStore
from backupremote.tls.certificates import fingerprintOfPem


def run(*argv: str) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with patch("sys.stdout", out), patch("sys.stderr", err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def mode(path: FilePath | str) -> int:
    return stat.S_IMODE(os.stat(path.path if isinstance(path, FilePath) else path).st_mode)


class CLITestCase(SynchronousTestCase):
    def ok(self, *argv: str) -> str:
        code, out, err = run(*argv)
        self.assertEqual((code, err), (0, ""), f"{argv} failed: {err}")
        return out

    def refused(self, expected: int, *argv: str) -> str:
        """Run C{argv}, expecting exit code C{expected} and a clean error."""
        code, out, err = run(*argv)
        self.assertEqual(code, expected, f"{argv}: stdout {out!r} stderr {err!r}")
        self.assertNotIn("Traceback", err)
        return err

    def configRefused(self, *argv: str) -> str:
        err = self.refused(3, *argv)
        self.assertIn("error CONFIG_INVALID", err)
        self.assertIn("what to do:", err)
        return err

    def keygen(self) -> tuple[str, str]:
        directory = self.mktemp()
        self.ok("license", "keygen", directory)
        return (os.path.join(directory, "issuer.key"), os.path.join(directory, "issuer.pub"))

    def serverInit(self, *extra: str) -> FilePath:
        """A fresh server folder trusting a new issuer; self.issuerKey signs for it."""
        self.issuerKey, self.issuerPub = self.keygen()
        directory = FilePath(self.mktemp())
        out = self.ok("server", "init", directory.path, "--trust-issuer", self.issuerPub,
                      "--listen", "ssl:0:interface=127.0.0.1", "--hostname", "db1.example",
                      *extra)
        self.initOutput = out
        return directory

    def issue(self, clientId: str = "bob", *extra: str) -> str:
        out = os.path.join(self.mktemp())
        self.ok("license", "issue", "--issuer-key", self.issuerKey, "--client-id", clientId,
                "--feature", "remote.control", "--days", "10", "--out", out, *extra)
        return out


class LicenseKeygenTests(CLITestCase):
    def test_keygen(self) -> None:
        key, pub = self.keygen()
        self.assertEqual(mode(key), 0o600)
        private = loadIssuerKey(key)
        self.assertEqual(
            loadTrustedKey(pub).public_bytes_raw(), private.public_key().public_bytes_raw())

    def test_keygenTwiceRefused(self) -> None:
        directory = self.mktemp()
        self.ok("license", "keygen", directory)
        before = FilePath(directory).child("issuer.key").getContent()
        self.configRefused("license", "keygen", directory)
        self.assertEqual(FilePath(directory).child("issuer.key").getContent(), before)


class ServerInitTests(CLITestCase):
    def test_init(self) -> None:
        directory = self.serverInit()
        config = loadServerConfig(directory.child("server.toml"))
        self.assertEqual(config.listen, "ssl:0:interface=127.0.0.1")
        self.assertEqual(config.dataDir, directory.child("data"))
        self.assertEqual(len(config.trustedIssuers), 1)
        self.assertEqual(config.trustedIssuers[0].getContent(),
                         FilePath(self.issuerPub).getContent())
        self.assertEqual(mode(config.tlsKey), 0o600)
        self.assertEqual(mode(config.dataDir), 0o700)
        fingerprint = fingerprintOfPem(config.tlsCert.getContent())
        self.assertIn(fingerprint, self.initOutput)

    def test_initJSON(self) -> None:
        directory = self.serverInit("--json")
        result = json.loads(self.initOutput)
        cert = directory.descendant(["tls", "server.crt"]).getContent()
        self.assertEqual(result["fingerprint"], fingerprintOfPem(cert))
        self.assertEqual(result["config"], directory.child("server.toml").path)

    def test_initTwiceRefused(self) -> None:
        directory = self.serverInit()
        before = directory.child("server.toml").getContent()
        self.configRefused("server", "init", directory.path)
        self.assertEqual(directory.child("server.toml").getContent(), before)

    def test_plainTCPRefused(self) -> None:
        directory = self.mktemp()
        err = self.configRefused("server", "init", directory, "--listen", "tcp:7443")
        self.assertIn("ssl:", err)
        self.assertFalse(os.path.exists(directory))

    def test_badTrustIssuerRefusedBeforeWriting(self) -> None:
        notAKey = FilePath(self.mktemp())
        notAKey.setContent(b"hello\n")
        ecKey = FilePath(self.mktemp())
        ecKey.setContent(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        for issuer in (self.mktemp(), notAKey.path, ecKey.path):
            directory = self.mktemp()
            self.configRefused("server", "init", directory, "--trust-issuer", issuer)
            self.assertFalse(os.path.exists(directory), issuer)

    def test_badClientCARefusedBeforeWriting(self) -> None:
        """
        An unreadable or non-certificate C{--client-ca} is refused cleanly and
        leaves nothing behind, so a corrected re-run succeeds.
        """
        notACert = FilePath(self.mktemp())
        notACert.setContent(b"hello\n")
        directory = self.mktemp()
        for ca in (self.mktemp(), notACert.path):
            self.configRefused("server", "init", directory, "--client-ca", ca)
            self.assertFalse(os.path.exists(directory), ca)


class AddClientTests(CLITestCase):
    def setUp(self) -> None:
        self.server = self.serverInit()
        self.config = self.server.child("server.toml").path

    def storedHash(self, clientId: str) -> str | None:
        store = ServerStore.inDataDir(self.server.child("data"))
        try:
            return store.secretHashOf(clientId)
        finally:
            store.close()

    def test_addClientWithSecretFile(self) -> None:
        secretFile = self.mktemp()
        self.ok("server", "add-client", "--config", self.config, "bob",
                "--secret-file", secretFile)
        self.assertEqual(mode(secretFile), 0o600)
        secret = FilePath(secretFile).getContent().strip()
        self.assertTrue(secret)
        self.assertTrue(verifySecret(self.storedHash("bob"), secret.decode("ascii")))
        self.assertFalse(verifySecret(self.storedHash("bob"), "not-the-secret"))
        for path in self.server.child("data").walk():
            if path.isfile():
                self.assertNotIn(secret, path.getContent(), path.path)

    def test_addTwiceRefused(self) -> None:
        first, second = self.mktemp(), self.mktemp()
        self.ok("server", "add-client", "--config", self.config, "bob", "--secret-file", first)
        hashBefore = self.storedHash("bob")
        self.configRefused("server", "add-client", "--config", self.config, "bob",
                           "--secret-file", second)
        self.assertFalse(os.path.exists(second))
        self.assertEqual(self.storedHash("bob"), hashBefore)
        self.assertTrue(verifySecret(
            self.storedHash("bob"), FilePath(first).getContent().strip().decode()))

    def test_invalidIdsRefused(self) -> None:
        for clientId in ("", "../x", "a b", "x" * 200, ".hidden", "a/b"):
            err = self.configRefused("server", "add-client", "--config", self.config, clientId)
            self.assertIn("client id", err)
        store = ServerStore.inDataDir(self.server.child("data"))
        self.addCleanup(store.close)
        self.assertEqual(store.clientIds(), [])

    def test_longestValidId(self) -> None:
        self.ok("server", "add-client", "--config", self.config, "a" * 128)
        self.assertIsNotNone(self.storedHash("a" * 128))

    def test_secretPrintedOnce(self) -> None:
        out = self.ok("server", "add-client", "--config", self.config, "bob")
        hashed = self.storedHash("bob")
        candidates = [w for w in out.split() if verifySecret(hashed, w)]
        self.assertEqual(len(candidates), 1, out)
        self.assertEqual(out.count(candidates[0]), 1)

    def test_secretInJSON(self) -> None:
        out = self.ok("server", "add-client", "--config", self.config, "bob", "--json")
        result = json.loads(out)
        self.assertEqual(result["clientId"], "bob")
        self.assertTrue(verifySecret(self.storedHash("bob"), result["secret"]))

    def test_missingConfigRefused(self) -> None:
        self.configRefused("server", "add-client", "--config", self.mktemp(), "bob")


class LicenseIssueShowTests(CLITestCase):
    def setUp(self) -> None:
        self.server = self.serverInit()

    def test_issueAndShowVerified(self) -> None:
        token = self.issue()
        self.assertEqual(mode(token), 0o600)
        code, out, err = run("license", "show", token, "--trust", self.issuerPub, "--json")
        self.assertEqual((code, err), (0, ""))
        shown = json.loads(out)
        self.assertIs(shown["verified"], True)
        self.assertEqual(shown["features"], ["remote.control"])
        self.assertEqual(shown["clientId"], "bob")

    def test_showHuman(self) -> None:
        token = self.issue()
        out = self.ok("license", "show", token, "--trust", self.issuerPub)
        self.assertIn("verified   yes: signature and validity dates are good", out)
        self.assertIn("features   remote.control", out)
        self.assertRegex(out, r"valid      \d{4}-\d\d-\d\d \d\d:\d\d to \d{4}-\d\d-\d\d "
                              r"\d\d:\d\d UTC \(10 days left\)")
        for python in ("True", "False", "None"):
            self.assertNotIn(python, out)
        _, otherPub = self.keygen()
        code, out, _ = run("license", "show", token, "--trust", otherPub)
        self.assertEqual(code, 4)
        self.assertIn("verified   NO: LICENSE_BAD_SIGNATURE", out)
        out = self.ok("license", "show", token)
        self.assertIn("verified   not checked: no issuer key given", out)
        self.assertNotIn("None", out)

    def test_showOtherIssuerNotVerified(self) -> None:
        token = self.issue()
        _, otherPub = self.keygen()
        code, out, err = run("license", "show", token, "--trust", otherPub, "--json")
        self.assertEqual(code, 4, err)
        shown = json.loads(out)
        self.assertIs(shown["verified"], False)
        self.assertIn("LICENSE_BAD_SIGNATURE", shown["reason"])

    def test_showWithServerConfig(self) -> None:
        token = self.issue()
        out = self.ok("license", "show", token, "--json",
                      "--server-config", self.server.child("server.toml").path)
        self.assertIs(json.loads(out)["verified"], True)

    def test_showWithoutKeyIsUndecided(self) -> None:
        token = self.issue()
        out = self.ok("license", "show", token, "--json")
        self.assertIsNone(json.loads(out)["verified"])

    def test_zeroDaysRefused(self) -> None:
        out = self.mktemp()
        err = self.configRefused("license", "issue", "--issuer-key", self.issuerKey,
                                 "--client-id", "bob", "--days", "0", "--out", out)
        self.assertIn("--days", err)
        self.assertFalse(os.path.exists(out))

    def test_existingOutRefused(self) -> None:
        token = self.issue()
        before = FilePath(token).getContent()
        self.configRefused("license", "issue", "--issuer-key", self.issuerKey,
                           "--client-id", "bob", "--out", token)
        self.assertEqual(FilePath(token).getContent(), before)

    def test_unknownFeatureIsUsageError(self) -> None:
        self.refused(2, "license", "issue", "--issuer-key", self.issuerKey, "--client-id",
                     "bob", "--feature", "remote.everything", "--out", self.mktemp())


class ClientInitTests(CLITestCase):
    def setUp(self) -> None:
        self.server = self.serverInit()
        self.fingerprint = json.loads(run(
            "server", "init", self.mktemp(), "--json")[1])["fingerprint"]
        self.secretFile = self.mktemp()
        self.ok("server", "add-client", "--config", self.server.child("server.toml").path,
                "bob", "--secret-file", self.secretFile)
        self.secret = FilePath(self.secretFile).getContent().strip().decode()
        self.license = self.issue()

    def init(self, directory: str, *changes: str, fingerprint: str | None = None) -> list[str]:
        argv = {"--server": "127.0.0.1:7443", "--fingerprint": fingerprint or self.fingerprint,
                "--client-id": "bob", "--secret-file": self.secretFile,
                "--license": self.license}
        for option, value in zip(changes[::2], changes[1::2], strict=True):
            argv[option] = value
        return ["client", "init", directory] + [x for kv in argv.items() for x in kv]

    def test_init(self) -> None:
        directory = FilePath(self.mktemp())
        self.ok(*self.init(directory.path))
        config = loadClientConfig(directory.child("client.toml"))
        self.assertEqual(config.clientId, "bob")
        self.assertEqual((config.server.host, config.server.port), ("127.0.0.1", 7443))
        self.assertEqual(config.fingerprints, (self.fingerprint,))
        self.assertEqual(config.secretFile, directory.child("client.secret"))
        self.assertEqual(mode(config.secretFile), 0o600)
        self.assertEqual(config.readSecret(), self.secret)
        self.assertEqual(config.readLicense(), FilePath(self.license).getContent().strip().decode())

    def test_fingerprintNormalised(self) -> None:
        directory = FilePath(self.mktemp())
        self.ok(*self.init(directory.path,
                           fingerprint=self.fingerprint.replace(":", "").lower()))
        config = loadClientConfig(directory.child("client.toml"))
        self.assertEqual(config.fingerprints, (self.fingerprint,))

    def test_severalFingerprints(self) -> None:
        """
        C{--fingerprint} twice pins both certificates of a rotation, written
        as C{fingerprints = [...]}.
        """
        other = json.loads(run("server", "init", self.mktemp(), "--json")[1])["fingerprint"]
        directory = FilePath(self.mktemp())
        self.ok(*self.init(directory.path), "--fingerprint", other.replace(":", ""))
        self.assertIn(b"fingerprints = [", directory.child("client.toml").getContent())
        config = loadClientConfig(directory.child("client.toml"))
        self.assertEqual(config.fingerprints, (self.fingerprint, other))

    def test_caFile(self) -> None:
        directory = FilePath(self.mktemp())
        ca = self.server.descendant(["tls", "server.crt"]).path
        argv = self.init(directory.path)
        index = argv.index("--fingerprint")
        argv[index:index + 2] = ["--ca-file", ca]
        self.ok(*argv)
        config = loadClientConfig(directory.child("client.toml"))
        self.assertEqual(config.fingerprints, ())
        self.assertEqual(config.caFile.getContent(), FilePath(ca).getContent())

    def test_initTwiceRefused(self) -> None:
        directory = self.mktemp()
        self.ok(*self.init(directory))
        self.configRefused(*self.init(directory))

    def test_licenceForAnotherClientRefused(self) -> None:
        directory = self.mktemp()
        err = self.configRefused(*self.init(directory, "--license", self.issue("carol")))
        self.assertIn("carol", err)
        self.assertFalse(os.path.exists(directory))

    def test_badServerRefused(self) -> None:
        for server in ("127.0.0.1", "127.0.0.1:", ":7443", "127.0.0.1:0",
                       "127.0.0.1:65536", "127.0.0.1:port", "::1", "[::1]"):
            directory = self.mktemp()
            self.configRefused(*self.init(directory, "--server", server))
            self.assertFalse(os.path.exists(directory), server)

    def test_ipv6Server(self) -> None:
        directory = FilePath(self.mktemp())
        self.ok(*self.init(directory.path, "--server", "[::1]:7443"))
        config = loadClientConfig(directory.child("client.toml"))
        self.assertEqual((config.server.host, config.server.port), ("::1", 7443))

    def test_badFingerprintRefusedBeforeWriting(self) -> None:
        """
        A bad fingerprint is refused before anything is written, so the
        corrected command then succeeds in the same folder.
        """
        directory = self.mktemp()
        for bad in ("AB:CD", "zz" * 32, self.fingerprint + ":00"):
            self.configRefused(*self.init(directory, fingerprint=bad))
            self.assertFalse(os.path.exists(directory), bad)
        self.ok(*self.init(directory))

    def test_missingCAFileRefusedBeforeWriting(self) -> None:
        directory = self.mktemp()
        argv = self.init(directory)
        index = argv.index("--fingerprint")
        argv[index:index + 2] = ["--ca-file", self.mktemp()]
        self.configRefused(*argv)
        self.assertFalse(os.path.exists(directory))

    def test_fingerprintAndCAFileIsUsageError(self) -> None:
        directory = self.mktemp()
        err = self.refused(2, *self.init(directory), "--ca-file",
                           self.server.descendant(["tls", "server.crt"]).path)
        self.assertIn("usage:", err)
        self.assertFalse(os.path.exists(directory))

    def test_missingSecretFileRefused(self) -> None:
        directory = self.mktemp()
        self.configRefused(*self.init(directory, "--secret-file", self.mktemp()))
        self.assertFalse(os.path.exists(directory))


class HelpTests(SynchronousTestCase):
    def subcommands(self) -> list[list[str]]:
        """Every command path in the parser tree, the top level included."""
        paths: list[list[str]] = []

        def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
            paths.append(path)
            for action in parser._actions:
                if isinstance(action, argparse._SubParsersAction):
                    for name, child in action.choices.items():
                        walk(child, path + [name])

        walk(buildParser(), [])
        return paths

    def test_everyHelpHasAnExample(self) -> None:
        paths = self.subcommands()
        for expected in (["server", "init"], ["server", "add-client"], ["license", "keygen"],
                         ["license", "issue"], ["license", "show"], ["client", "init"],
                         ["capabilities"]):
            self.assertIn(expected, paths)
        for path in paths:
            code, out, err = run(*path, "--help")
            self.assertEqual(code, 0, path)
            self.assertIn("example", out, f"backupremote {' '.join(path)} --help")

    def test_usageErrorExitCode(self) -> None:
        code, out, err = run("server", "init")
        self.assertEqual(code, 2)
        self.assertIn("usage:", err)
