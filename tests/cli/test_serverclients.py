"""
C{backupremote server clients list|show|disable|enable|remove|reset-secret},
run in-process against a server folder made by C{server init}.
"""

from __future__ import annotations

import json
import os

from twisted.python.filepath import FilePath

from backupremote.server.state.secrethash import verifySecret
from backupremote.server.state.store import ServerStore
from tests.cli.test_admin import CLITestCase, mode, run


class ServerClientsTests(CLITestCase):
    def setUp(self) -> None:
        self.server = self.serverInit()
        self.config = self.server.child("server.toml").path
        self.secrets = {}
        for clientId in ("laptop", "phone"):
            secretFile = self.mktemp()
            self.ok("server", "add-client", "--config", self.config, clientId,
                    "--secret-file", secretFile)
            self.secrets[clientId] = FilePath(secretFile).getContent().strip().decode()

    def clients(self, *argv: str) -> str:
        return self.ok("server", "clients", *argv[:1], "--config", self.config, *argv[1:])

    def clientsJSON(self, *argv: str):
        return json.loads(self.clients(*argv, "--json"))

    def store(self) -> ServerStore:
        store = ServerStore.inDataDir(self.server.child("data"))
        self.addCleanup(store.close)
        return store

    def test_list(self) -> None:
        listed = self.clientsJSON("list")
        self.assertEqual([(c["clientId"], c["enabled"]) for c in listed],
                         [("laptop", True), ("phone", True)])
        self.assertEqual(set(listed[0]),
                         {"clientId", "enabled", "createdAt", "lastAuthAt", "lastAuthPeer"})
        human = self.clients("list")
        self.assertIn("laptop  enabled  registered ", human)
        self.assertIn("never authenticated", human)

    def test_listShowsLastAuth(self) -> None:
        self.store().audit("auth", "ok", "laptop", "192.0.2.7:4000", "r-1")
        shown = self.clientsJSON("show", "laptop")
        self.assertEqual(shown["lastAuthPeer"], "192.0.2.7:4000")
        self.assertIsNotNone(shown["lastAuthAt"])
        self.assertIn("last auth", self.clients("show", "laptop"))
        self.assertIsNone(self.clientsJSON("show", "phone")["lastAuthAt"])

    def test_listEmpty(self) -> None:
        self.clients("remove", "laptop")
        self.clients("remove", "phone")
        self.assertEqual(self.clientsJSON("list"), [])
        self.assertIn("no clients registered", self.clients("list"))

    def test_neverShowsTheSecretOrItsHash(self) -> None:
        store = self.store()
        stored = store.secretHashOf("laptop")
        for argv in (("list",), ("show", "laptop")):
            for extra in ((), ("--json",)):
                out = self.clients(*argv, *extra)
                self.assertNotIn(self.secrets["laptop"], out)
                self.assertNotIn(stored.split("$")[-1], out)

    def test_disableAndEnable(self) -> None:
        result = self.clientsJSON("disable", "phone")
        self.assertEqual(result, {"clientId": "phone", "enabled": False, "changed": True})
        self.assertIsNone(self.store().secretHashOf("phone"))
        self.assertIsNotNone(self.store().secretHashOf("laptop"))
        self.assertFalse(self.clientsJSON("show", "phone")["enabled"])
        self.assertIn("DISABLED", self.clients("list"))
        again = self.clientsJSON("disable", "phone")
        self.assertFalse(again["changed"])
        self.assertIn("already disabled", self.clients("disable", "phone"))
        self.assertIn("enabled phone", self.clients("enable", "phone"))
        self.assertTrue(verifySecret(self.store().secretHashOf("phone"), self.secrets["phone"]))

    def test_remove(self) -> None:
        result = self.clientsJSON("remove", "phone")
        self.assertEqual(result, {"clientId": "phone", "removed": True})
        self.assertEqual(self.store().clientIds(), ["laptop"])
        # the id may be registered again, with a new secret
        self.ok("server", "add-client", "--config", self.config, "phone")

    def test_resetSecretPrintedOnce(self) -> None:
        out = self.clients("reset-secret", "laptop")
        stored = self.store().secretHashOf("laptop")
        candidates = [w for w in out.split() if verifySecret(stored, w)]
        self.assertEqual(len(candidates), 1, out)
        self.assertEqual(out.count(candidates[0]), 1)
        self.assertFalse(verifySecret(stored, self.secrets["laptop"]))
        # the other client keeps its secret
        self.assertTrue(verifySecret(self.store().secretHashOf("phone"), self.secrets["phone"]))

    def test_resetSecretJSON(self) -> None:
        result = self.clientsJSON("reset-secret", "laptop")
        self.assertEqual(set(result), {"clientId", "secret"})
        self.assertTrue(verifySecret(self.store().secretHashOf("laptop"), result["secret"]))

    def test_resetSecretToFile(self) -> None:
        secretFile = self.mktemp()
        out = self.clients("reset-secret", "laptop", "--secret-file", secretFile)
        self.assertEqual(mode(secretFile), 0o600)
        secret = FilePath(secretFile).getContent().strip().decode()
        self.assertNotIn(secret, out)
        self.assertTrue(verifySecret(self.store().secretHashOf("laptop"), secret))

    def test_resetSecretKeepsDisabled(self) -> None:
        self.clients("disable", "laptop")
        self.clients("reset-secret", "laptop")
        self.assertFalse(self.clientsJSON("show", "laptop")["enabled"])

    def test_resetSecretRefusesExistingFile(self) -> None:
        existing = FilePath(self.mktemp())
        existing.setContent(b"keep me\n")
        before = self.store().secretHashOf("laptop")
        self.configRefused("server", "clients", "reset-secret", "--config", self.config,
                           "laptop", "--secret-file", existing.path)
        self.assertEqual(existing.getContent(), b"keep me\n")
        self.assertEqual(self.store().secretHashOf("laptop"), before)

    def test_unknownClientRefused(self) -> None:
        """Every action on an id nobody registered is CONFIG_INVALID; nothing is written."""
        secretFile = self.mktemp()
        for argv in (("show",), ("disable",), ("enable",), ("remove",),
                     ("reset-secret", "--secret-file", secretFile)):
            err = self.configRefused("server", "clients", argv[0], "--config", self.config,
                                     "nobody", *argv[1:])
            self.assertIn("no client 'nobody' is registered", err)
            self.assertIn("server clients list", err)
        self.assertFalse(os.path.exists(secretFile))
        self.assertEqual([r for r in self.store().auditTrail() if r[1] == "operator"], [])

    def test_unknownClientJSONError(self) -> None:
        code, out, err = run("server", "clients", "show", "--config", self.config, "nobody",
                             "--json")
        self.assertEqual((code, out), (3, ""))
        self.assertEqual(json.loads(err)["errorCode"], "CONFIG_INVALID")

    def test_wrongConfigMakesNothing(self) -> None:
        """A --config whose data folder has no database is refused, not initialised."""
        folder = FilePath(self.mktemp())
        folder.makedirs()
        toml = folder.child("server.toml")
        toml.setContent(self.server.child("server.toml").getContent())
        err = self.configRefused("server", "clients", "list", "--config", toml.path)
        self.assertIn("no server database", err)
        self.assertFalse(folder.child("data").exists())
        self.configRefused("server", "clients", "list", "--config", self.mktemp())

    def test_missingClientIdIsUsageError(self) -> None:
        self.refused(2, "server", "clients", "disable", "--config", self.config)
        self.refused(2, "server", "clients", "list")
