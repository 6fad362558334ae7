"""
The client's history and servers commands as a user types them, against a
twistd server: ``schedule run-now`` through the job runner (driven by the
command without a daemon, handed to the client daemon when one runs),
``runs list``/``runs show``, ``db list``'s last backup, ``servers``, and
``--config`` anywhere on the line or from C{$BACKUPREMOTE_CONFIG}.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from typing import Any

from tests.integration.test_daemons import ProgramTestCase, program


class HistoryCommandsTests(ProgramTestCase):
    def test_runNowAndHistory(self) -> None:
        self.setUpServerAndClient()
        databases = self.folder.child("databases")
        databases.makedirs()
        dbFile = databases.child("notes.sqlite3")
        with sqlite3.connect(dbFile.path) as db:
            db.execute("create table notes (id integer primary key, body text)")
            db.executemany("insert into notes (body) values (?)", [("x" * 100,)] * 500)
        serverToml = self.folder.descendant(["server", "server.toml"])
        serverToml.setContent(serverToml.getContent()
                              + f'\n[databases]\nsqlite_roots = ["{databases.path}"]\n'.encode())
        self.daemon("backupremote-server", "--config", "server/server.toml")

        def added() -> Any:
            done = subprocess.run(
                [program("backupremote"), "db", "add", "notes", "--engine", "sqlite",
                 "--path", dbFile.path, "--config", "client/client.toml", "--json"],
                cwd=self.folder.path, capture_output=True, text=True, timeout=60)
            return json.loads(done.stdout) if done.returncode == 0 else None

        created = self.waitFor(added, "the server to store the configuration")
        config = ("--config", "client/client.toml")
        self.cli("schedule", "add", "hourly", "--db", "notes", "--every", "1h", *config)

        # no daemon: the command drives the job to its end
        ran = json.loads(self.cli("schedule", "run-now", "hourly", "--wait", "--json",
                                  *config).stdout)
        self.assertEqual((ran["state"], ran["released"], ran["storedState"]),
                         ("delivered", True, "released"))
        self.assertEqual(ran["databaseConfigId"], created["id"])
        self.assertEqual(ran["schedule"], "hourly")

        listed = json.loads(self.cli("runs", "list", "--json", *config).stdout)
        self.assertEqual([r["runId"] for r in listed], [ran["runId"]])
        self.assertGreater(listed[0]["sizeBytes"], 0)
        for filters in (("--schedule", "hourly"), ("--db", "notes"), ("--db", created["id"]),
                        ("--state", "delivered"), ("--since", "1h"), ("--server", "default")):
            found = json.loads(self.cli("runs", "list", *filters, "--json", *config).stdout)
            self.assertEqual(len(found), 1, filters)
        self.assertEqual(json.loads(self.cli(
            "runs", "list", "--state", "failed", "--json", *config).stdout), [])
        human = self.cli(*config, "runs", "list").stdout
        self.assertIn("delivered", human)
        self.assertIn("hourly", human)
        shown = json.loads(self.cli("runs", "show", ran["runId"], "--json", *config).stdout)
        self.assertEqual([s["state"] for s in shown["steps"]],
                         ["pending", "running", "completed", "downloaded", "verified",
                          "delivered", "released"])
        self.assertIn("released", self.cli("runs", "show", ran["runId"], *config).stdout)

        dbs = json.loads(self.cli("db", "list", "--json", *config).stdout)
        self.assertEqual(dbs[0]["lastBackup"]["runId"], ran["runId"])
        self.assertIn("last backup", self.cli("db", "list", *config).stdout)

        # --config from the environment
        env = os.environ | {"BACKUPREMOTE_CONFIG": self.folder.descendant(
            ["client", "client.toml"]).path}
        done = subprocess.run([program("backupremote"), "servers", "--json"],
                              cwd=self.folder.path, capture_output=True, text=True,
                              timeout=60, env=env)
        self.assertEqual(done.returncode, 0, done.stderr)
        (server,) = json.loads(done.stdout)
        self.assertEqual((server["name"], server["connected"], server["clientId"]),
                         ("default", True, "laptop"))
        self.assertIn(server["licenseDaysLeft"], (6, 7))

        # a run this client does not know points at its history
        missing = self.cli("status", "0b8e0000-0000-0000-0000-000000000000", *config,
                           expect=6)
        self.assertIn("backupremote runs list", missing.stderr)
        self.cli("--server", "elsewhere", "runs", "list", *config, expect=3)

        # with the client daemon running, run-now hands the job to it
        self.daemon("backupremote-client", "--config", "client/client.toml")
        self.waitFor(lambda: self.folder.descendant(["client", "locks", ".daemon"]).exists(),
                     "the client daemon to start")
        handed = subprocess.run(
            [program("backupremote"), *config, "schedule", "run-now", "hourly", "--wait"],
            cwd=self.folder.path, capture_output=True, text=True, timeout=120)
        self.assertEqual(handed.returncode, 0, handed.stderr + handed.stdout)
        self.assertIn("the client daemon drives it", handed.stdout)
        self.assertIn("delivered (staging released)", handed.stdout)
        self.assertEqual(len(json.loads(self.cli("runs", "list", "--json", *config).stdout)),
                         2)
