"""
Several servers in client.toml (C{[servers.NAME]}, the lone C{[server]} as
C{default}), how the CLI picks one, and what L{ClientServers} records of each.
"""

from __future__ import annotations

from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.servers import describeServer
from backupremote.client.config import ServerAddress, loadClientConfig
from backupremote.client.servers import ClientServers
from backupremote.protocol.errors import CONFIG_INVALID, CONNECTION_FAILED, BackupRemoteError

FINGERPRINT = ":".join(["AB"] * 32)
OTHER = ":".join(["CD"] * 32)

CLIENT = """\
[client]
id = "bob"
secret_file = "client.secret"
license_file = "client.license"
"""
SERVER = f"""
[server]
address = "db1.example:7443"
fingerprint = "{FINGERPRINT}"
"""
EAST = f"""
[servers.east]
address = "east.example:7443"
fingerprints = ["{OTHER}"]
client_id = "bob-east"
secret_file = "east.secret"
"""
WEST = f"""
[servers.west]
address = "west.example:7443"
fingerprints = ["{FINGERPRINT}"]
"""


class SeveralServersConfigTests(SynchronousTestCase):
    def load(self, text: str) -> object:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("client.toml")
        path.setContent(text.encode("utf-8"))
        for name in ("client.secret", "east.secret"):
            folder.child(name).setContent(b"s3cret")
            folder.child(name).chmod(0o600)
        return loadClientConfig(path)

    def refused(self, text: str, *mentions: str) -> None:
        error = self.assertRaises(BackupRemoteError, self.load, text)
        self.assertEqual(error.code, CONFIG_INVALID)
        for mention in mentions:
            self.assertIn(mention, error.message)

    def test_loneServerIsDefault(self) -> None:
        config = self.load(CLIENT + SERVER)
        self.assertEqual(config.serverNames, ("default",))
        self.assertEqual(config.pickServer(), "default")
        self.assertEqual(config.forServer("default").server, ServerAddress("db1.example", 7443))

    def test_namedServers(self) -> None:
        config = self.load(CLIENT + EAST + WEST)
        self.assertEqual(config.serverNames, ("east", "west"))
        east = config.forServer("east")
        self.assertEqual((east.clientId, east.server, east.fingerprints),
                         ("bob-east", ServerAddress("east.example", 7443), (OTHER,)))
        self.assertEqual(east.secretFile.basename(), "east.secret")
        self.assertEqual(east.readSecret(), "s3cret")
        west = config.forServer("west")
        # what a server does not name is the [client]'s
        self.assertEqual((west.clientId, west.secretFile.basename(),
                          west.licenseFile.basename()),
                         ("bob", "client.secret", "client.license"))

    def test_serverBesideNamedOnes(self) -> None:
        config = self.load(CLIENT + SERVER + EAST)
        self.assertEqual(config.serverNames, ("default", "east"))
        # the top-level fields are the default server's
        self.assertEqual(config.server, ServerAddress("db1.example", 7443))

    def test_pickServer(self) -> None:
        config = self.load(CLIENT + EAST + WEST)
        self.assertEqual(config.pickServer("west"), "west")
        error = self.assertRaises(BackupRemoteError, config.pickServer)
        self.assertEqual(error.code, CONFIG_INVALID)
        self.assertIn("east, west", error.message)
        self.assertIn("--server NAME", error.message)
        error = self.assertRaises(BackupRemoteError, config.pickServer, "north")
        self.assertIn("no server 'north'; its servers: east, west", error.message)
        self.assertEqual(self.load(CLIENT + EAST).pickServer(), "east")

    def test_refused(self) -> None:
        self.refused(CLIENT + SERVER + EAST.replace("east", "default"),
                     "[server] or [servers.default]")
        self.refused(CLIENT + EAST.replace("fingerprints", "ca_file = 'ca.pem'\nfingerprints"),
                     "servers.east.fingerprints and servers.east.ca_file")
        self.refused(CLIENT + EAST.replace('address = "east.example:7443"\n', ""),
                     "servers.east.address is required")
        self.refused(CLIENT + EAST.replace("client_id", "clientid"), "servers.east.clientid")
        self.refused(SERVER.replace("[server]", "[servers.x]"),
                     "servers.x.client_id is required")
        self.refused(CLIENT + "[servers]\nfoo = 1\n", "[servers.foo] must be a table")


class ClientServersTests(SynchronousTestCase):
    def config(self) -> object:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("client.toml")
        path.setContent((CLIENT + EAST + WEST).encode())
        for name in ("client.secret", "east.secret", "client.license"):
            folder.child(name).setContent(b"x")
            folder.child(name).chmod(0o600)
        return loadClientConfig(path)

    def test_checkRecordsEachServer(self) -> None:
        clock = Clock()
        clock.advance(1_800_000_000)
        servers = ClientServers(clock, self.config())
        east, west = servers("east"), servers("west")
        self.assertIs(servers("east"), east)
        self.assertEqual(east.connection.address, "east.example:7443")
        east.session = lambda: succeed({  # type: ignore[method-assign]
            "features": ["remote.execute"], "serverVersion": "1.2",
            "licenseExpiresAt": "2027-01-20T00:00:00Z"})
        west.session = lambda: fail(BackupRemoteError(  # type: ignore[method-assign]
            CONNECTION_FAILED, "cannot connect to the server at west.example:7443"))
        statuses = self.successResultOf(servers.checkAll())
        self.assertEqual([(s.name, s.connected) for s in statuses],
                         [("east", True), ("west", False)])
        data = statuses[0].asJSON(statuses[0].checkedAt)
        self.assertEqual((data["licenseExpiresAt"], data["licenseDaysLeft"],
                          data["features"], data["clientId"]),
                         ("2027-01-20T00:00:00Z", 5, ["remote.execute"], "bob-east"))
        # 4 days and 16 hours: 5 days left, as check, status and the
        # daemon's licence watch say it (a part of a day counts as one)
        self.assertIn("expires 2027-01-20 00:00 UTC (5 days left)",
                      describeServer(statuses[0], statuses[0].checkedAt))
        self.assertEqual(statuses[1].asJSON(statuses[1].checkedAt)["lastError"]["errorCode"],
                         CONNECTION_FAILED)
        self.assertFalse(east.connection.service.running)  # the daemon owns it
