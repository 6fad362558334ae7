"""
``backupremote check`` against the real server on 127.0.0.1 over TLS, a real
SQLite database behind it and local-folder destinations in the client's own
store: a healthy setup exits 0; a wrong fingerprint and a destination whose
folder is gone exit non-zero, each blocker named with what to do.
"""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
from argparse import Namespace
from datetime import datetime, timezone

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.cli.check import checkCommand
from backupremote.cli.output import EXIT_CONNECTION, EXIT_OK, Output
from backupremote.client.destinations.stored import DestinationStore, StoredDestination
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.errors import REGISTRY
from tests.integration import servers


class CheckAgainstARealServerTests(TestCase):
    async def setUpServer(self) -> None:
        roots = FilePath(self.mktemp())
        roots.makedirs()
        database = roots.child("notes.sqlite3")
        with sqlite3.connect(database.path) as db:
            db.execute("create table notes (id integer primary key, body text)")
            db.executemany("insert into notes (body) values (?)", [("x" * 50,)] * 100)
        self.server = await servers.startServer(self, sqliteRoots=(roots,))
        client = self.server.client(self)
        await client.createDatabaseConfig(DatabaseConfigInput(
            name="notes", engine="sqlite", path=database.path))
        await client.close()
        self.clientDir = FilePath(self.mktemp())
        self.clientDir.makedirs()
        self.clientDir.chmod(0o700)
        config = self.server.clientConfig()  # writes the secret and licence files
        for name, source in (("client.secret", config.secretFile),
                             ("client.license", config.licenseFile)):
            source.copyTo(self.clientDir.child(name))
            self.clientDir.child(name).chmod(0o600)

    def writeConfig(self, fingerprint: str) -> str:
        path = self.clientDir.child("client.toml")
        path.setContent(f"""\
[client]
id = "{servers.CLIENT_ID}"
secret_file = "client.secret"
license_file = "client.license"

[server]
address = "127.0.0.1:{self.server.port}"
fingerprints = ["{fingerprint}"]

[limits]
connect_attempts = 1
call_timeout = 20
""".encode())
        return path.path

    async def addDestination(self, name: str, folder: FilePath) -> None:
        store = SQLiteClientStore.inFolder(self.clientDir, reactor)
        try:
            await store.opened()
            await DestinationStore(store).add(StoredDestination(
                str(uuid.uuid4()), name, "local", f"file://{folder.path}"), None,
                datetime.now(timezone.utc))
        finally:
            await store.close()

    async def check(self, path: str) -> tuple[int, dict, str]:
        out, err = io.StringIO(), io.StringIO()
        args = Namespace(config=path, server=None, no_databases=False)
        code = await checkCommand(reactor, args, Output(True, out=out, err=err))
        human = io.StringIO()
        self.assertEqual(await checkCommand(reactor, args, Output(False, out=human, err=err)),
                         code, "the table and the JSON agree")
        return code, json.loads(out.getvalue()), human.getvalue()

    async def test_healthy(self) -> None:
        await self.setUpServer()
        shelf = FilePath(self.mktemp())
        shelf.makedirs()
        await self.addDestination("shelf", shelf)
        code, report, table = await self.check(self.writeConfig(self.server.fingerprint))
        self.assertEqual(code, EXIT_OK, table)
        self.assertEqual((report["ok"], report["blockers"], report["exitCode"]),
                         (True, 0, 0))
        checks = {(c["check"], c["subject"]): c for c in report["checks"]}
        self.assertEqual(sorted(checks), [
            ("clock", "default"), ("config", "client.toml"),
            ("database", "default/notes"), ("destination", "shelf"),
            ("licence", "default"), ("preflight", "default/notes"), ("server", "default")])
        # the licence of servers.startServer is valid for one day: a warning, no blocker
        licence = checks.pop(("licence", "default"))
        self.assertEqual((licence["status"], licence["errorCode"]),
                         ("warning", "LICENSE_EXPIRING"))
        self.assertIn("(1 day left)", licence["detail"])
        self.assertEqual({c["status"] for c in checks.values()}, {"ok"}, table)
        self.assertIn("sqlite: connection ok", checks["database", "default/notes"]["detail"])
        self.assertIn("ready to back up with in-process",
                      checks["preflight", "default/notes"]["detail"])
        self.assertIn(f"127.0.0.1:{self.server.port}: connected (TLS, certificate pinned",
                      checks["server", "default"]["detail"])
        self.assertIn("ready: 0 blockers, 1 warning", table)
        self.assertEqual(shelf.listdir(), [], "the probe file is removed")

    async def test_wrongFingerprintAndMissingDestination(self) -> None:
        await self.setUpServer()
        gone = FilePath(self.mktemp())  # never made: an unmounted share
        await self.addDestination("offsite", gone)
        code, report, table = await self.check(self.writeConfig(":".join(["AB"] * 32)))
        self.assertEqual(code, EXIT_CONNECTION, table)
        self.assertEqual(report["exitCode"], EXIT_CONNECTION)
        blockers = [(c["check"], c["subject"], c["errorCode"]) for c in report["checks"]
                    if c["status"] == "blocker"]
        self.assertEqual([b[:2] for b in blockers], [("server", "default"),
                                                   ("destination", "offsite")], table)
        self.assertEqual(blockers[0][2], "TLS_FINGERPRINT_MISMATCH")
        for check in report["checks"]:
            if check["status"] == "blocker":
                self.assertEqual(check["action"], REGISTRY[check["errorCode"]].action)
                self.assertIn("what to do: " + check["action"], table)
        self.assertIn("NOT ready: 2 blockers", table)
        self.assertIn("(exit code 5)", table)
