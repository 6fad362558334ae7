"""
The server's files are its own: the store and its WAL 0600 in a 0700
folder whatever the umask, the twistd plugin's umask, and no start with a
TLS key or a data folder key that group or others can read.
"""

from __future__ import annotations

import os
import stat

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.private import PRIVATE_UMASK
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.secretbox import SecretBox
from backupremote.server import tap
from backupremote.server.admin.serverinit import createServerFolder
from backupremote.server.config import loadServerConfig
from backupremote.server.edge.listener import tlsOptions
from backupremote.server.state.store import ServerStore


def mode(path: FilePath) -> int:
    return stat.S_IMODE(os.stat(path.path).st_mode)


def currentUmask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class UmaskTestCase(SynchronousTestCase):
    """Each test runs under a lax umask, as an embedding application may."""

    def setUp(self) -> None:
        self.addCleanup(os.umask, os.umask(0o022))


class StoreModeTests(UmaskTestCase):
    def test_newStoreIsPrivate(self) -> None:
        dataDir = FilePath(self.mktemp()).child("nested").child("data")
        store = ServerStore.inDataDir(dataDir)
        self.addCleanup(store.close)
        store.addClient("bob", "hash")  # a write: the -wal and -shm exist now
        db = dataDir.child("server.sqlite3")
        files = [db, db.siblingExtension("-wal"), db.siblingExtension("-shm")]
        for path in files:
            self.assertTrue(path.exists(), path.path)
            self.assertEqual(mode(path), 0o600, path.path)
        for folder in (dataDir, dataDir.parent()):
            self.assertEqual(mode(folder), 0o700, folder.path)

    def test_looseStoreTightened(self) -> None:
        """A store an earlier version made 0644 is made 0600 when opened."""
        dataDir = FilePath(self.mktemp())
        ServerStore.inDataDir(dataDir).close()
        db = dataDir.child("server.sqlite3")
        db.chmod(0o644)
        dataDir.chmod(0o755)
        store = ServerStore.inDataDir(dataDir)
        self.addCleanup(store.close)
        store.addClient("bob", "hash")
        for path in (db, db.siblingExtension("-wal"), db.siblingExtension("-shm")):
            self.assertEqual(mode(path), 0o600, path.path)
        self.assertEqual(mode(dataDir), 0o700)


class SharedKeyRefusedTests(UmaskTestCase):
    def serverFolder(self) -> FilePath:
        folder = FilePath(self.mktemp())
        createServerFolder(folder)
        return folder.child("server.toml")

    def test_secretsKeyReadableByGroupRefused(self) -> None:
        dataDir = FilePath(self.mktemp())
        dataDir.makedirs()
        SecretBox.inDataDir(dataDir)
        key = dataDir.child("secrets.key")
        self.assertEqual(mode(key), 0o600)
        for loose in (0o640, 0o604, 0o644, 0o660):
            key.chmod(loose)
            error = self.assertRaises(BackupRemoteError, SecretBox.inDataDir, dataDir)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn(key.path, error.message)
            self.assertIn(f"chmod 600 {key.path}", error.message)
            self.assertEqual(mode(key), loose, "refused, not silently changed")

    def test_tlsKeyReadableByOthersRefused(self) -> None:
        config = loadServerConfig(self.serverFolder())
        tlsOptions(config)
        config.tlsKey.chmod(0o644)
        error = self.assertRaises(BackupRemoteError, tlsOptions, config)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn(f"TLS key {config.tlsKey.path}", error.message)
        self.assertIn(f"chmod 600 {config.tlsKey.path}", error.message)

    def makeService(self, configPath: FilePath) -> object:
        options = tap.Options()
        options.parseOptions(["--config", configPath.path])
        return tap.makeService(options)

    def test_twistdPluginSetsUmask(self) -> None:
        configPath = self.serverFolder()
        self.makeService(configPath)
        self.assertEqual(currentUmask(), PRIVATE_UMASK)

    def test_twistdPluginRefusesSharedKeys(self) -> None:
        configPath = self.serverFolder()
        config = loadServerConfig(configPath)
        config.tlsKey.chmod(0o640)
        with self.assertRaises(SystemExit) as raised:
            self.makeService(configPath)
        self.assertIn(f"chmod 600 {config.tlsKey.path}", str(raised.exception))
        config.tlsKey.chmod(0o600)
        key = config.dataDir.child("secrets.key")
        self.makeService(configPath)  # makes the data folder's key
        key.chmod(0o644)
        with self.assertRaises(SystemExit) as raised:
            self.makeService(configPath)
        self.assertIn("CONFIG_INVALID", str(raised.exception))
        self.assertIn(f"chmod 600 {key.path}", str(raised.exception))
