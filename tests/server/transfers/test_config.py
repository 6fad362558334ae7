"""The staging and transfer keys of server.toml."""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.server.config import loadServerConfig

BASE = """\
[server]
data_dir = "data"

[tls]
key = "k"
cert = "c"
"""


class StagingConfigTests(SynchronousTestCase):
    def load(self, extra: str) -> object:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("server.toml")
        path.setContent((BASE + extra).encode())
        return loadServerConfig(path)

    def test_defaults(self) -> None:
        config = self.load("")
        self.assertEqual((config.artifactTtl, config.stagingMaxBytes,  # type: ignore
                          config.maxConcurrentTransfers), (86400.0, 0, 8))  # type: ignore

    def test_values(self) -> None:
        config = self.load("[staging]\nartifact_ttl = 600\nmax_bytes = 5000000000\n"
                           "[limits]\nmax_concurrent_transfers = 2\n")
        self.assertEqual((config.artifactTtl, config.stagingMaxBytes,  # type: ignore
                          config.maxConcurrentTransfers), (600, 5_000_000_000, 2))  # type: ignore

    def test_refused(self) -> None:
        for extra, mention in [
            ("[staging]\nartifact_ttl = 0\n", "staging.artifact_ttl"),
            ("[staging]\nmax_bytes = -1\n", "staging.max_bytes"),
            ("[staging]\nmax_bytes = \"10G\"\n", "staging.max_bytes"),
            ("[staging]\nttl = 5\n", "staging.ttl"),
            ("[limits]\nmax_concurrent_transfers = 0\n", "limits.max_concurrent_transfers"),
        ]:
            error = self.assertRaises(BackupRemoteError, self.load, extra)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn(mention, error.message)
