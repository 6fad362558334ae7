"""L{backupremote.server.config.loadServerConfig}: strict reading of server.toml."""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.server.config import DEFAULT_LISTEN, loadServerConfig

MINIMAL = """\
[server]
data_dir = "data"

[tls]
key = "tls/server.key"
cert = "tls/server.crt"
"""


class LoadServerConfigTests(SynchronousTestCase):
    def write(self, text: str) -> FilePath:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("server.toml")
        path.setContent(text.encode("utf-8"))
        return path

    def refused(self, text: str, *mentions: str) -> str:
        """C{text} is refused with CONFIG_INVALID naming each of C{mentions}."""
        error = self.assertRaises(BackupRemoteError, loadServerConfig, self.write(text))
        self.assertEqual(error.code, CONFIG_INVALID)
        for mention in mentions:
            self.assertIn(mention, error.message)
        return error.message

    def test_minimal(self) -> None:
        path = self.write(MINIMAL)
        config = loadServerConfig(path)
        self.assertEqual(config.listen, DEFAULT_LISTEN)
        self.assertEqual(config.trustedIssuers, ())
        self.assertIsNone(config.clientCA)
        self.assertIsNone(config.logFile)
        self.assertEqual(config.keepaliveInterval, 30.0)
        self.assertEqual(config.maxFailedAuthsPerConnection, 3)

    def test_relativePathsFromConfigFolder(self) -> None:
        path = self.write(MINIMAL.replace(
            'data_dir = "data"',
            'data_dir = "data"\ntrusted_issuers = ["keys/a.pub", "/abs/b.pub"]\n'
            'log_file = "logs/server.jsonl"'))
        base = path.parent()
        config = loadServerConfig(path)
        self.assertEqual(config.dataDir, base.child("data"))
        self.assertEqual(config.tlsKey, base.descendant(["tls", "server.key"]))
        self.assertEqual(config.tlsCert, base.descendant(["tls", "server.crt"]))
        self.assertEqual(config.logFile, base.descendant(["logs", "server.jsonl"]))
        self.assertEqual(config.trustedIssuers,
                         (base.descendant(["keys", "a.pub"]), FilePath("/abs/b.pub")))

    def test_relativePathOutsideConfigFolder(self) -> None:
        """C{../x} is a legitimate relative path, resolved like any other."""
        path = self.write(MINIMAL.replace('"data"', '"../shared/data"'))
        config = loadServerConfig(path)
        self.assertEqual(config.dataDir, path.parent().sibling("shared").child("data"))

    def test_allKeys(self) -> None:
        config = loadServerConfig(self.write(MINIMAL + """\
client_ca = "tls/ca.pem"

[limits]
keepalive_interval = 5
keepalive_timeout = 2.5
auth_timeout = 10
max_failed_auths_per_connection = 2
max_violations_per_connection = 7
max_failed_auths_per_peer = 4
peer_lockout_seconds = 60
"""))
        self.assertEqual(config.clientCA.basename(), "ca.pem")
        self.assertEqual(
            (config.keepaliveInterval, config.keepaliveTimeout, config.authTimeout,
             config.maxFailedAuthsPerConnection, config.maxViolationsPerConnection,
             config.maxFailedAuthsPerPeer, config.peerLockoutSeconds),
            (5, 2.5, 10, 2, 7, 4, 60))

    def test_reactorTimeSlice(self) -> None:
        """100 us by default; 0 keeps the kernel's; what Linux cannot grant is refused."""
        self.assertEqual(loadServerConfig(self.write(MINIMAL)).reactorTimeSliceUs, 100)
        for value in (0, 100, 3000, 100000):
            config = loadServerConfig(self.write(
                MINIMAL.replace("[tls]", f"reactor_time_slice_us = {value}\n[tls]")))
            self.assertEqual(config.reactorTimeSliceUs, value)
        for value in ("50", "100001", "-1", "0.5", '"fast"'):
            self.refused(MINIMAL.replace("[tls]", f"reactor_time_slice_us = {value}\n[tls]"),
                         "server.reactor_time_slice_us")

    def test_unknownKey(self) -> None:
        self.refused(MINIMAL.replace("[tls]", 'lisen = "ssl:1"\n[tls]'), "server.lisen")
        self.refused(MINIMAL + "[limits]\nkeepalive = 3\n", "limits.keepalive")

    def test_unknownSection(self) -> None:
        self.refused(MINIMAL + "[databases]\nx = 1\n", "databases")

    def test_wrongTypes(self) -> None:
        self.refused(MINIMAL.replace('"data"', "5"), "server.data_dir")
        self.refused(MINIMAL.replace("[tls]", "listen = 7443\n[tls]"), "server.listen")
        self.refused(MINIMAL.replace("[tls]", 'trusted_issuers = "a.pub"\n[tls]'),
                     "server.trusted_issuers")
        self.refused(MINIMAL.replace("[tls]", "trusted_issuers = [1]\n[tls]"),
                     "server.trusted_issuers")
        self.refused(MINIMAL + '[limits]\nkeepalive_interval = "30"\n', "limits.keepalive_interval")
        self.refused(MINIMAL + "[limits]\nauth_timeout = true\n", "limits.auth_timeout")
        self.refused(MINIMAL + "[limits]\nmax_failed_auths_per_peer = 2.5\n",
                     "limits.max_failed_auths_per_peer")
        self.refused('server = "x"\n[tls]\nkey = "k"\ncert = "c"\n', "[server]")

    def test_outOfRange(self) -> None:
        self.refused(MINIMAL + "[limits]\nkeepalive_interval = 0\n", "limits.keepalive_interval")
        self.refused(MINIMAL + "[limits]\nmax_violations_per_connection = 0\n",
                     "limits.max_violations_per_connection")

    def test_nonFiniteNumbers(self) -> None:
        for value in ("nan", "inf"):
            self.refused(MINIMAL + f"[limits]\nkeepalive_interval = {value}\n",
                         "limits.keepalive_interval")

    def test_missingRequired(self) -> None:
        self.refused(MINIMAL.replace('data_dir = "data"', ""), "server.data_dir")
        self.refused(MINIMAL.replace('key = "tls/server.key"', ""), "tls.key")
        self.refused(MINIMAL.replace('cert = "tls/server.crt"', ""), "tls.cert")
        self.refused(MINIMAL.replace('"data"', '""'), "server.data_dir")

    def test_listenMustBeSSL(self) -> None:
        for listen in ("tcp:7443", "7443", "unix:/tmp/s", "SSL7443"):
            self.refused(MINIMAL.replace("[tls]", f'listen = "{listen}"\n[tls]'),
                         "server.listen", "ssl:")
        config = loadServerConfig(self.write(
            MINIMAL.replace("[tls]", 'listen = "ssl:7443:interface=127.0.0.1"\n[tls]')))
        self.assertEqual(config.listen, "ssl:7443:interface=127.0.0.1")

    def test_notTOML(self) -> None:
        self.refused("[server\n", "not valid TOML")

    def test_missingFile(self) -> None:
        error = self.assertRaises(
            BackupRemoteError, loadServerConfig, FilePath(self.mktemp()).child("server.toml"))
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("does not exist", error.message)
