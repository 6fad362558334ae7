"""The staging and transfer keys of server.toml."""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.server.config import ServerConfig, loadServerConfig

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

    def test_transferShares(self) -> None:
        """One client's share is half the transfers by default, at least one."""
        config = self.load("")
        self.assertEqual((config.maxTransfersPerClient,  # type: ignore
                          config.transferStallTimeout), (4, 60.0))  # type: ignore
        for total, share in [(1, 1), (2, 1), (3, 1), (5, 2), (16, 8)]:
            config = self.load(f"[limits]\nmax_concurrent_transfers = {total}\n")
            self.assertEqual(config.maxTransfersPerClient, share)  # type: ignore
        config = self.load("[limits]\nmax_concurrent_transfers = 6\n"
                           "max_transfers_per_client = 6\ntransfer_stall_timeout = 12.5\n")
        self.assertEqual((config.maxTransfersPerClient,  # type: ignore
                          config.transferStallTimeout), (6, 12.5))  # type: ignore
        self.assertEqual(ServerConfig(FilePath("d"), FilePath("k"), FilePath("c"),
                                      maxConcurrentTransfers=10).maxTransfersPerClient, 5)

    def test_refused(self) -> None:
        for extra, mention in [
            ("[staging]\nartifact_ttl = 0\n", "staging.artifact_ttl"),
            ("[staging]\nmax_bytes = -1\n", "staging.max_bytes"),
            ("[staging]\nmax_bytes = \"10G\"\n", "staging.max_bytes"),
            ("[staging]\nttl = 5\n", "staging.ttl"),
            ("[limits]\nmax_concurrent_transfers = 0\n", "limits.max_concurrent_transfers"),
            ("[limits]\nmax_transfers_per_client = 0\n", "limits.max_transfers_per_client"),
            ("[limits]\nmax_transfers_per_client = 1.5\n", "limits.max_transfers_per_client"),
            ("[limits]\nmax_transfers_per_client = true\n",
             "limits.max_transfers_per_client"),
            ("[limits]\ntransfer_stall_timeout = 0\n", "limits.transfer_stall_timeout"),
            ("[limits]\ntransfer_stall_timeout = \"1m\"\n", "limits.transfer_stall_timeout"),
            ("[limits]\ntransfer_stall_timeout = nan\n", "limits.transfer_stall_timeout"),
        ]:
            error = self.assertRaises(BackupRemoteError, self.load, extra)
            self.assertEqual(error.code, CONFIG_INVALID)
            self.assertIn(mention, error.message)
