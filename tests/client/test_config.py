"""L{backupremote.client.config}: strict reading of client.toml."""

from __future__ import annotations

import os

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.config import ServerAddress, loadClientConfig
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

FINGERPRINT = ":".join(["AB"] * 32)

MINIMAL = f"""\
[client]
id = "bob"
secret_file = "client.secret"
license_file = "client.license"

[server]
address = "db1.example:7443"
fingerprint = "{FINGERPRINT}"
"""


class LoadClientConfigTests(SynchronousTestCase):
    def write(self, text: str) -> FilePath:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("client.toml")
        path.setContent(text.encode("utf-8"))
        return path

    def refused(self, text: str, *mentions: str) -> str:
        error = self.assertRaises(BackupRemoteError, loadClientConfig, self.write(text))
        self.assertEqual(error.code, CONFIG_INVALID)
        for mention in mentions:
            self.assertIn(mention, error.message)
        return error.message

    def test_minimal(self) -> None:
        config = loadClientConfig(self.write(MINIMAL))
        self.assertEqual(config.clientId, "bob")
        self.assertEqual(config.server, ServerAddress("db1.example", 7443))
        self.assertEqual(config.fingerprints, (FINGERPRINT,))
        self.assertIsNone(config.caFile)
        self.assertEqual(config.connectAttempts, 3)

    def test_relativePathsFromConfigFolder(self) -> None:
        path = self.write(MINIMAL.replace("[server]", 'log_file = "logs/c.jsonl"\n[server]'))
        base = path.parent()
        config = loadClientConfig(path)
        self.assertEqual(config.secretFile, base.child("client.secret"))
        self.assertEqual(config.licenseFile, base.child("client.license"))
        self.assertEqual(config.logFile, base.descendant(["logs", "c.jsonl"]))

    def test_relativePathOutsideConfigFolder(self) -> None:
        path = self.write(MINIMAL.replace('"client.license"', '"../licences/bob.license"'))
        config = loadClientConfig(path)
        self.assertEqual(config.licenseFile,
                         path.parent().sibling("licences").child("bob.license"))

    def test_absolutePath(self) -> None:
        config = loadClientConfig(self.write(
            MINIMAL.replace('"client.secret"', '"/etc/backupremote/bob.secret"')))
        self.assertEqual(config.secretFile, FilePath("/etc/backupremote/bob.secret"))

    def test_fingerprintNormalised(self) -> None:
        config = loadClientConfig(self.write(
            MINIMAL.replace(FINGERPRINT, "sha256:" + "ab" * 32)))
        self.assertEqual(config.fingerprints, (FINGERPRINT,))

    def test_badFingerprint(self) -> None:
        self.refused(MINIMAL.replace(FINGERPRINT, "AB:CD"), "fingerprint")

    def test_fingerprintsList(self) -> None:
        """C{fingerprints = [...]} pins several certificates (a rotation), normalised."""
        other = ":".join(["CD"] * 32)
        text = MINIMAL.replace(f'fingerprint = "{FINGERPRINT}"',
                               f'fingerprints = ["{FINGERPRINT}", "{other.replace(":", "")}"]')
        config = loadClientConfig(self.write(text))
        self.assertEqual(config.fingerprints, (FINGERPRINT, other))

    def test_fingerprintsRefused(self) -> None:
        line = f'fingerprint = "{FINGERPRINT}"'
        self.refused(MINIMAL.replace(line, "fingerprints = []"), "server.fingerprints")
        self.refused(MINIMAL.replace(line, f'fingerprints = "{FINGERPRINT}"'),
                     "server.fingerprints")
        self.refused(MINIMAL.replace(line, f'fingerprints = ["{FINGERPRINT}", "AB:CD"]'),
                     "fingerprint")
        self.refused(MINIMAL.replace(line, f'fingerprints = ["{FINGERPRINT}", 7]'),
                     "server.fingerprints")
        self.refused(MINIMAL + f'fingerprints = ["{FINGERPRINT}"]\n',
                     "server.fingerprints", "server.fingerprint")
        self.refused(MINIMAL.replace(line, f'fingerprints = ["{FINGERPRINT}"]')
                     + 'ca_file = "ca.pem"\n', "server.fingerprints", "server.ca_file")

    def test_caFile(self) -> None:
        path = self.write(MINIMAL.replace(f'fingerprint = "{FINGERPRINT}"',
                                          'ca_file = "ca.pem"\nserver_name = "db1"'))
        config = loadClientConfig(path)
        self.assertEqual(config.fingerprints, ())
        self.assertEqual(config.caFile, path.parent().child("ca.pem"))
        self.assertEqual(config.serverName, "db1")

    def test_exactlyOneOfFingerprintAndCAFile(self) -> None:
        both = MINIMAL + 'ca_file = "ca.pem"\n'
        neither = MINIMAL.replace(f'fingerprint = "{FINGERPRINT}"', "")
        for text in (both, neither):
            self.refused(text, "server.fingerprints", "server.ca_file")

    def test_clientCertAndKeyTogether(self) -> None:
        self.refused(MINIMAL + 'client_cert = "c.crt"\n', "client_cert", "client_key")
        self.refused(MINIMAL + 'client_key = "c.key"\n', "client_cert", "client_key")
        config = loadClientConfig(self.write(MINIMAL + 'client_cert = "c.crt"\nclient_key = "c.key"\n'))
        self.assertEqual(config.clientKey.basename(), "c.key")

    def test_unknownKey(self) -> None:
        self.refused(MINIMAL.replace("[server]", 'secret = "x"\n[server]'), "client.secret")
        self.refused(MINIMAL + 'fingerprnt = "x"\n', "server.fingerprnt")
        self.refused(MINIMAL + "[limits]\ntimeout = 3\n", "limits.timeout")

    def test_unknownSection(self) -> None:
        self.refused(MINIMAL + "[destinations]\nx = 1\n", "destinations")

    def test_wrongTypes(self) -> None:
        self.refused(MINIMAL.replace('id = "bob"', "id = 7"), "client.id")
        self.refused(MINIMAL.replace('"db1.example:7443"', "7443"), "server.address")
        self.refused(MINIMAL.replace('"client.secret"', '["client.secret"]'),
                     "client.secret_file")
        self.refused(MINIMAL + '[limits]\nconnect_attempts = "3"\n', "limits.connect_attempts")
        self.refused(MINIMAL + "[limits]\ncall_timeout = false\n", "limits.call_timeout")
        self.refused('client = ["bob"]\n', "[client]")

    def test_missingRequired(self) -> None:
        self.refused(MINIMAL.replace('id = "bob"', ""), "client.id")
        self.refused(MINIMAL.replace('secret_file = "client.secret"', ""), "client.secret_file")
        self.refused(MINIMAL.replace('license_file = "client.license"', ""),
                     "client.license_file")
        self.refused(MINIMAL.replace('address = "db1.example:7443"', ""), "server.address")

    def test_nonFiniteNumbers(self) -> None:
        for value in ("nan", "inf", "-inf"):
            self.refused(MINIMAL + f"[limits]\ncall_timeout = {value}\n", "limits.call_timeout")

    def test_addressInFile(self) -> None:
        config = loadClientConfig(self.write(MINIMAL.replace("db1.example:7443", "[::1]:7443")))
        self.assertEqual(config.server, ServerAddress("::1", 7443))
        self.refused(MINIMAL.replace("db1.example:7443", "db1.example:70000"), "server.address")


class ServerAddressTests(SynchronousTestCase):
    def test_hostAndPort(self) -> None:
        self.assertEqual(ServerAddress.parse("db1.example:7443"), ServerAddress("db1.example", 7443))
        self.assertEqual(ServerAddress.parse("127.0.0.1:1"), ServerAddress("127.0.0.1", 1))
        self.assertEqual(ServerAddress.parse("h:65535"), ServerAddress("h", 65535))

    def test_ipv6(self) -> None:
        address = ServerAddress.parse("[::1]:7443")
        self.assertEqual(address, ServerAddress("::1", 7443))
        self.assertEqual(str(address), "[::1]:7443")
        self.assertEqual(ServerAddress.parse(str(address)), address)
        self.assertEqual(ServerAddress.parse("[fe80::1:2]:443"), ServerAddress("fe80::1:2", 443))

    def test_refused(self) -> None:
        for text in ("db1", "db1:", ":7443", "db1:0", "db1:65536", "db1:-1", "db1:+80",
                     "db1:port", "db1:٧٤٤٣", "", "[]:7443", "[::1]", "::1", "::1:7443",
                     "fe80::1:443", "[::1:7443"):
            error = self.assertRaises(BackupRemoteError, ServerAddress.parse, text)
            self.assertEqual(error.code, CONFIG_INVALID, text)
            self.assertIn("HOST:PORT", error.message)


class ReadSecretTests(SynchronousTestCase):
    def config(self, content: bytes | None, mode: int = 0o600):
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("client.toml")
        path.setContent(MINIMAL.encode("utf-8"))
        if content is not None:
            secret = folder.child("client.secret")
            secret.setContent(content)
            os.chmod(secret.path, mode)
        return loadClientConfig(path)

    def test_readSecret(self) -> None:
        self.assertEqual(self.config(b"s3cr3t\n").readSecret(), "s3cr3t")

    def test_readableByOthersRefused(self) -> None:
        for mode in (0o644, 0o640, 0o604):
            error = self.assertRaises(
                BackupRemoteError, self.config(b"s3cr3t\n", mode).readSecret)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn("chmod 600", error.message)

    def test_missingRefused(self) -> None:
        error = self.assertRaises(BackupRemoteError, self.config(None).readSecret)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("client.secret", error.message)

    def test_emptyRefused(self) -> None:
        error = self.assertRaises(BackupRemoteError, self.config(b"\n").readSecret)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("empty", error.message)
