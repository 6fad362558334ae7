"""
The client's files are its own: no start with a secret file or a client
TLS key that group or others can read, the twistd plugin's umask, and the
folders the library makes itself are 0700.
"""

from __future__ import annotations

import os
import stat

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client import tap
from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import loadClientConfig
from backupremote.logfile import JSONLogFileService
from backupremote.private import PRIVATE_UMASK
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.tls.certificates import generateCertificateAuthority, issueClientCertificate

CONFIG = """\
[client]
id = "bob"
secret_file = "client.secret"
license_file = "client.license"

[server]
address = "127.0.0.1:7443"
fingerprint = "{fingerprint}"
client_cert = "client.crt"
client_key = "client.key"
"""


def mode(path: FilePath) -> int:
    return stat.S_IMODE(os.stat(path.path).st_mode)


class ClientFileModeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.addCleanup(os.umask, os.umask(0o022))
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        caKey, caCert = generateCertificateAuthority("test CA")
        key, cert = issueClientCertificate(caKey, caCert, "bob")
        for name, content in [("client.secret", b"s3cr3t\n"), ("client.license", b"token\n"),
                              ("client.crt", cert), ("client.key", key)]:
            self.folder.child(name).setContent(content)
        for name in ("client.secret", "client.key"):
            self.folder.child(name).chmod(0o600)
        self.configPath = self.folder.child("client.toml")
        self.configPath.setContent(CONFIG.format(fingerprint=":".join(["AB"] * 32)).encode())

    def client(self) -> BackupRemoteClient:
        return BackupRemoteClient.fromConfig(MemoryReactorClock(),
                                             loadClientConfig(self.configPath))

    def test_privateFilesAccepted(self) -> None:
        self.client()

    def test_sharedClientKeyRefused(self) -> None:
        key = self.folder.child("client.key")
        for loose in (0o644, 0o640, 0o604):
            key.chmod(loose)
            error = self.assertRaises(BackupRemoteError, self.client)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn(f"client TLS key {key.path}", error.message)
            self.assertIn(f"chmod 600 {key.path}", error.message)

    def test_sharedSecretRefused(self) -> None:
        secret = self.folder.child("client.secret")
        secret.chmod(0o640)
        error = self.assertRaises(BackupRemoteError, self.client)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn(f"chmod 600 {secret.path}", error.message)

    def makeService(self) -> object:
        options = tap.Options()
        options.parseOptions(["--config", self.configPath.path])
        return tap.makeService(options)

    def test_twistdPlugin(self) -> None:
        """The daemon sets its umask, and refuses a shared key or secret file."""
        self.makeService()
        mask = os.umask(0)
        os.umask(mask)
        self.assertEqual(mask, PRIVATE_UMASK)
        for name in ("client.key", "client.secret"):
            path = self.folder.child(name)
            path.chmod(0o644)
            with self.assertRaises(SystemExit) as raised:
                self.makeService()
            self.assertIn(f"chmod 600 {path.path}", str(raised.exception))
            path.chmod(0o600)

    def test_logFolderPrivate(self) -> None:
        logFile = self.folder.descendant(["logs", "daemon", "client.jsonl"])
        service = JSONLogFileService(logFile, LogPublisher())
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(mode(logFile), 0o600)
        self.assertEqual(mode(logFile.parent()), 0o700)
        self.assertEqual(mode(logFile.parent().parent()), 0o700)
