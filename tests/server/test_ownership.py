"""
Who may touch a database configuration or a run: its owner, or an admin.

alice owns a configuration and its runs; bob, another client of the same
server, gets C{NOT_FOUND} for each of them, word for word the answer for an
id that does not exist; root, made an admin in server.toml, sees and acts
on all of them.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.databases import configIdOf
from backupremote.protocol import errors
from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    DeleteDatabaseConfig,
    GetDatabaseConfigById,
    ListDatabaseConfigs,
    TestDatabaseConnection,
    UpdateDatabaseConfig,
    ValidateServerBackupPrerequisites,
)
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import (
    CancelBackup,
    ExecuteBackup,
    GetExecutionStatus,
    SubscribeRun,
)
from backupremote.protocol.structured import converter
from backupremote.protocol.transfers import (
    FileChunkHashes,
    FileTransferStart,
    ListFiles,
    ReleaseArtifact,
)
from backupremote.server.config import loadServerConfig
from backupremote.server.databases.store import DatabaseConfigStore
from backupremote.server.state.store import MIGRATIONS, ServerStore
from tests.fixtures import synchronously
from tests.server.transfers.helpers import StagingMixin

UNKNOWN = "00000000-0000-4000-8000-000000000000"


class OwnershipTests(StagingMixin, SynchronousTestCase):
    """alice (C{self.client}) owns C{self.configId}; bob is a bystander, root an admin."""

    def setUp(self) -> None:
        self.setUpStaging(artifactTtl=3600.0, adminClients=frozenset({"root"}))
        self.bob = self.addClient("bob")
        self.root = self.addClient("root")
        self.patch(self.harness.databases.engines["sqlite"], "runInThread", synchronously)

    def configInput(self, name: str = "db") -> DatabaseConfigInput:
        return DatabaseConfigInput(name=name, engine="sqlite",
                                   path=self.harness.databases.stored(self.configId).path)

    def configRows(self) -> Any:
        return DatabaseConfigStore(self.harness.store.connection).snapshot()

    def sameAsUnknown(self, loopback: Any, command: Any, foreign: str,
                      **arguments: Any) -> None:
        """
        C{command} naming the foreign id C{foreign} is refused exactly as
        when it names an id that does not exist.
        """
        key = next(k for k, v in arguments.items() if v == foreign)
        refused = loopback.error(command, **arguments)
        unknown = loopback.error(command, **(arguments | {key: UNKNOWN}))
        self.assertEqual(refused.code, errors.NOT_FOUND, (command, refused))
        self.assertEqual(
            (refused.code, refused.message.replace(foreign, UNKNOWN), refused.details),
            (unknown.code, unknown.message, unknown.details), command)

    def test_othersConfigurationsAreNotFound(self) -> None:
        """bob cannot list, get, update, delete, test or preflight alice's configuration."""
        before = self.configRows()
        page = self.bob.call(ListDatabaseConfigs)["page"]
        self.assertEqual((page.items, page.total), ([], 0))
        mine = self.configId
        for command, arguments in [
            (GetDatabaseConfigById, {"id": mine}),
            (UpdateDatabaseConfig, {"id": mine, "version": 1,
                                    "config": self.configInput("taken-over")}),
            (DeleteDatabaseConfig, {"id": mine}),
            (DeleteDatabaseConfig, {"id": mine, "version": 1}),
            (TestDatabaseConnection, {"id": mine}),
            (ValidateServerBackupPrerequisites, {"id": mine}),
        ]:
            self.sameAsUnknown(self.bob, command, mine, **arguments)
        self.assertEqual(self.configRows(), before)
        self.assertEqual(self.client.call(GetDatabaseConfigById, id=mine)["config"].owner,
                         "alice")

    def test_othersConfigurationsCannotBeBackedUp(self) -> None:
        self.sameAsUnknown(self.bob, ExecuteBackup, self.configId, runId="bobs-run",
                           databaseConfigId=self.configId)
        self.assertIsNone(self.harness.runs._store.get("bobs-run"))
        self.assertEqual(self.producer.data, {})

    def test_othersRunsAreNotFound(self) -> None:
        """bob cannot follow, cancel, list, download or release alice's run."""
        self.stage("mine")
        fileId = self.client.call(ListFiles, runId="mine")["manifest"].files[0].fileId
        self.harness.runs.queue.maxConcurrent = 0  # a second run stays queued, so cancellable
        self.client.call(ExecuteBackup, runId="waiting", databaseConfigId=self.configId)
        for command, foreign, arguments in [
            (GetExecutionStatus, "mine", {"runId": "mine"}),
            (SubscribeRun, "mine", {"runId": "mine", "afterSeq": 0}),
            (CancelBackup, "waiting", {"runId": "waiting"}),
            (ListFiles, "mine", {"runId": "mine"}),
            (FileChunkHashes, fileId, {"fileId": fileId, "start": 0}),
            (FileTransferStart, fileId, {"fileId": fileId, "startChunk": 0}),
            (ReleaseArtifact, "mine", {"runId": "mine"}),
        ]:
            self.sameAsUnknown(self.bob, command, foreign, **arguments)
        self.assertEqual(self.bob.client.boxes, [])
        self.assertEqual(self.bob.client.events, [])
        self.assertTrue(self.harness.staging.runFolder("mine").exists())
        self.assertEqual(self.client.call(GetExecutionStatus, runId="waiting")["status"].state,
                         "queued")

    def test_adminActsOnEveryConfiguration(self) -> None:
        mine = self.configId
        page = self.root.call(ListDatabaseConfigs)["page"]
        self.assertEqual([(c.id, c.owner) for c in page.items], [(mine, "alice")])
        self.assertEqual(self.root.call(GetDatabaseConfigById, id=mine)["config"].name, "db")
        updated = self.root.call(UpdateDatabaseConfig, id=mine, version=1,
                                 config=self.configInput("renamed"))["config"]
        self.assertEqual((updated.name, updated.owner, updated.version),
                         ("renamed", "alice", 2))
        self.assertTrue(self.root.call(TestDatabaseConnection, id=mine)["result"].ok)
        self.assertTrue(self.root.call(ValidateServerBackupPrerequisites, id=mine)["report"].ok)
        # a run the admin starts is the admin's: alice does not see it
        self.root.call(ExecuteBackup, runId="roots-run", databaseConfigId=mine)
        self.root.pump.flush()
        self.assertEqual(self.root.call(GetExecutionStatus, runId="roots-run")["status"].state,
                         "completed")
        self.assertEqual(self.client.error(GetExecutionStatus, runId="roots-run").code,
                         errors.NOT_FOUND)
        self.root.call(DeleteDatabaseConfig, id=mine, version=2)
        self.assertEqual(self.client.error(GetDatabaseConfigById, id=mine).code,
                         errors.NOT_FOUND)

    def test_adminActsOnEveryRun(self) -> None:
        status = self.stage("mine")
        self.assertEqual(self.root.call(GetExecutionStatus, runId="mine")["status"], status)
        self.root.call(SubscribeRun, runId="mine", afterSeq=0)
        self.assertEqual(self.root.client.events[-1].kind, "complete")
        manifest = self.root.call(ListFiles, runId="mine")["manifest"]
        fileId = manifest.files[0].fileId
        self.assertEqual(len(self.root.call(FileChunkHashes, fileId=fileId, start=0)["hashes"]),
                         manifest.files[0].chunkCount * 32)
        self.root.call(FileTransferStart, fileId=fileId, startChunk=0)
        self.root.pump.flush()
        self.assertEqual(self.root.client.received(), self.producer.data["mine"])
        self.assertTrue(self.root.call(ReleaseArtifact, runId="mine")["released"])
        self.assertFalse(self.harness.staging.runFolder("mine").exists())
        self.harness.runs.queue.maxConcurrent = 0
        self.client.call(ExecuteBackup, runId="waiting", databaseConfigId=self.configId)
        self.assertEqual(self.root.call(CancelBackup, runId="waiting")["status"].state,
                         "cancelled")

    def test_adminReleaseWaitsForTransfers(self) -> None:
        """An admin's release of alice's artifact still waits for alice's transfer."""
        self.stage("mine", 10_000_000)
        fileId = self.client.call(ListFiles, runId="mine")["manifest"].files[0].fileId
        self.client.client.holding = True
        self.client.call(FileTransferStart, fileId=fileId, startChunk=0)
        self.assertTrue(self.root.call(ReleaseArtifact, runId="mine")["released"])
        self.assertTrue(self.harness.staging.runFolder("mine").exists())
        while self.client.client.held:
            self.client.client.release()
            self.client.pump.flush()
        self.assertEqual(self.client.client.received(), self.producer.data["mine"])
        self.assertFalse(self.harness.staging.runFolder("mine").exists())

    def test_namesAreUniquePerOwner(self) -> None:
        """bob may use alice's name; a name clash is only ever with one's own."""
        bobs = self.bob.call(CreateDatabaseConfig, config=self.configInput("db"))["config"]
        self.assertEqual((bobs.name, bobs.owner), ("db", "bob"))
        again = self.bob.error(CreateDatabaseConfig, config=self.configInput("db"))
        self.assertEqual(again.code, errors.CONFLICT)
        other = self.bob.call(CreateDatabaseConfig, config=self.configInput("other"))["config"]
        clash = self.bob.error(UpdateDatabaseConfig, id=other.id, version=1,
                               config=self.configInput("db"))
        self.assertEqual(clash.code, errors.CONFLICT)
        self.assertEqual(self.client.call(ListDatabaseConfigs)["page"].total, 1)
        names = [(c.name, c.owner) for c in self.root.call(ListDatabaseConfigs)["page"].items]
        self.assertEqual(sorted(names), [("db", "alice"), ("db", "bob"), ("other", "bob")])

    def test_unownedConfigurationsAreForAdminsOnly(self) -> None:
        """A configuration the migration could not give an owner: admins only."""
        self.harness.store.connection.execute("UPDATE database_configs SET owner = NULL")
        self.assertEqual(self.client.call(ListDatabaseConfigs)["page"].total, 0)
        self.sameAsUnknown(self.client, GetDatabaseConfigById, self.configId, id=self.configId)
        [config] = self.root.call(ListDatabaseConfigs)["page"].items
        self.assertEqual((config.id, config.owner), (self.configId, None))

    def test_adminNameLookupRefusesAmbiguity(self) -> None:
        """The CLI's name lookup: an admin sees several configurations of one name."""
        self.bob.call(CreateDatabaseConfig, config=self.configInput("db"))

        class Client:
            def __init__(self, loopback: Any) -> None:
                self.loopback = loopback

            def allDatabaseConfigs(self) -> Any:
                return succeed(self.loopback.call(ListDatabaseConfigs)["page"].items)

        def lookup(loopback: Any, idOrName: str) -> Any:
            return self.successResultOf(configIdOf(Client(loopback), idOrName))

        self.assertEqual(lookup(self.client, "db"), self.configId)
        failure = self.failureResultOf(configIdOf(Client(self.root), "db"))
        self.assertEqual(failure.value.code, errors.VALIDATION_FAILED)
        self.assertIn("owner alice", failure.value.message)
        self.assertEqual(lookup(self.root, self.configId), self.configId)


class BystanderTests(StagingMixin, SynchronousTestCase):
    """Whatever bob sends naming alice's ids, he learns nothing and changes nothing."""

    def setUp(self) -> None:
        self.setUpStaging(artifactTtl=3600.0)
        self.stage("mine")
        self.fileId = self.client.call(ListFiles, runId="mine")["manifest"].files[0].fileId
        self.bob = self.addClient("bob")

    commands = st.sampled_from([
        (GetDatabaseConfigById, "config", {}),
        (DeleteDatabaseConfig, "config", {}),
        (UpdateDatabaseConfig, "config", {"version": 1}),
        (TestDatabaseConnection, "config", {}),
        (ValidateServerBackupPrerequisites, "config", {}),
        (ExecuteBackup, "config", {"runId": "bobs"}),
        (GetExecutionStatus, "run", {}),
        (CancelBackup, "run", {}),
        (SubscribeRun, "run", {}),
        (ListFiles, "run", {}),
        (ReleaseArtifact, "run", {}),
        (FileChunkHashes, "file", {"start": 0}),
        (FileTransferStart, "file", {"startChunk": 0}),
    ])

    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(calls=st.lists(st.tuples(commands, st.booleans()), min_size=1, max_size=4))
    def test_bystanderLearnsNothing(self, calls: list[Any]) -> None:
        ids = {"config": self.configId, "run": "mine", "file": self.fileId}
        names = {"config": "id", "run": "runId", "file": "fileId"}
        before = (DatabaseConfigStore(self.harness.store.connection).snapshot(),
                  self.harness.runs._store.get("mine"))
        for (command, kind, extra), foreign in calls:
            value = ids[kind] if foreign else UNKNOWN
            key = "databaseConfigId" if command is ExecuteBackup else names[kind]
            arguments = extra | {key: value}
            if command is UpdateDatabaseConfig:
                arguments["config"] = DatabaseConfigInput(name="x", engine="sqlite",
                                                          path="/nowhere/x.db")
            error = self.bob.error(command, **arguments)
            self.assertEqual(error.code, errors.NOT_FOUND, (command, error))
            self.assertNotIn("alice", error.message)
            self.assertEqual(error.message.replace(value, UNKNOWN), self.bob.error(
                command, **(arguments | {key: UNKNOWN})).message)
        after = (DatabaseConfigStore(self.harness.store.connection).snapshot(),
                 self.harness.runs._store.get("mine"))
        self.assertEqual(before, after)
        self.assertTrue(self.harness.staging.runFolder("mine").exists())
        self.assertEqual(self.bob.client.boxes, [])


def _v3Store(path: FilePath) -> sqlite3.Connection:
    """A store at schema version 3, as the server before owners made it."""
    db = sqlite3.connect(path.path, isolation_level=None)
    for index, migration in enumerate(MIGRATIONS[:3]):
        for statement in migration.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {index + 1}")
    return db


def _addConfig(db: sqlite3.Connection, configId: str, name: str) -> None:
    settings = {"host": None, "port": None, "database": None, "user": None,
                "path": "/srv/sqlite/x.db", "options": {},
                "backup": converter.unstructure(BackupOptions())}
    db.execute("INSERT INTO database_configs VALUES (?, ?, 'sqlite', ?, NULL, 1, ?, ?)",
               (configId, name, json.dumps(settings), "2026-10-01T00:00:00+00:00",
                "2026-10-01T00:00:00+00:00"))


def _addRun(db: sqlite3.Connection, runId: str, configId: str, clientId: str,
            createdAt: str) -> None:
    db.execute("INSERT INTO runs (runId, databaseConfigId, clientId, state, status, createdAt) "
               "VALUES (?, ?, ?, 'completed', '{}', ?)", (runId, configId, clientId, createdAt))


def _addClient(db: sqlite3.Connection, clientId: str) -> None:
    db.execute("INSERT INTO clients (clientId, secretHash, createdAt) VALUES (?, 'h', 'now')",
               (clientId,))


class MigrationTests(SynchronousTestCase):
    """Schema version 4: owners for the configurations of an existing store."""

    def setUp(self) -> None:
        self.path = FilePath(self.mktemp())

    def owners(self) -> dict[str, str | None]:
        store = ServerStore(self.path)
        self.addCleanup(store.close)
        self.assertEqual(store.connection.execute("PRAGMA user_version").fetchone()[0], 4)
        return dict(store.connection.execute("SELECT id, owner FROM database_configs"))

    def test_migratesToTheFirstClientThatRanABackup(self) -> None:
        db = _v3Store(self.path)
        for clientId in ("alice", "bob"):
            _addClient(db, clientId)
        _addConfig(db, "c1", "shop")
        _addConfig(db, "c2", "blog")
        _addConfig(db, "c3", "never-run")
        # inserted first, but bob's run is the earlier one
        _addRun(db, "r1", "c1", "alice", "2026-10-02T10:00:00+00:00")
        _addRun(db, "r2", "c1", "bob", "2026-10-02T09:00:00+00:00")
        _addRun(db, "r3", "c2", "alice", "2026-10-03T09:00:00+00:00")
        db.close()
        self.assertEqual(self.owners(), {"c1": "bob", "c2": "alice", "c3": None})

    def test_migratesToTheOnlyClient(self) -> None:
        db = _v3Store(self.path)
        _addClient(db, "alice")
        _addConfig(db, "c1", "shop")
        db.close()
        self.assertEqual(self.owners(), {"c1": "alice"})

    def test_keepsEverythingElse(self) -> None:
        db = _v3Store(self.path)
        _addConfig(db, "c1", "shop")
        before = db.execute("SELECT id, name, engine, settings, passwordSealed, version, "
                            "createdAt, updatedAt FROM database_configs").fetchall()
        db.close()
        store = ServerStore(self.path)
        self.addCleanup(store.close)
        after = store.connection.execute(
            "SELECT id, name, engine, settings, passwordSealed, version, createdAt, "
            "updatedAt FROM database_configs").fetchall()
        self.assertEqual(after, before)
        # names are now unique per owner only
        configs = DatabaseConfigStore(store.connection)
        stored = configs.get("c1")
        self.assertIsNone(stored.owner)
        configs.insert(evolve(stored, id="c2", owner="alice"))
        configs.insert(evolve(stored, id="c3", owner="bob"))
        error = self.assertRaises(errors.BackupRemoteError, configs.insert,
                                  evolve(stored, id="c4", owner="bob"))
        self.assertEqual(error.code, errors.CONFLICT)


class RoleConfigTests(SynchronousTestCase):
    """C{[clients.ID] role} in server.toml, read strictly."""

    MINIMAL = '[server]\ndata_dir = "data"\n[tls]\nkey = "k"\ncert = "c"\n'

    def load(self, extra: str) -> Any:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("server.toml")
        path.setContent((extra + self.MINIMAL).encode("utf-8"))
        return loadServerConfig(path)

    def test_roles(self) -> None:
        self.assertEqual(self.load("").adminClients, frozenset())
        config = self.load('[clients.root]\nrole = "admin"\n[clients.bob]\nrole = "client"\n'
                           '[clients."ops.team"]\nrole = "admin"\n[clients.carol]\n')
        self.assertEqual(config.adminClients, frozenset({"root", "ops.team"}))

    def test_refused(self) -> None:
        for extra, mention in [
            ('[clients.root]\nrol = "admin"\n', "clients.root.rol"),
            ('[clients.root]\nrole = "superuser"\n', "clients.root.role"),
            ('[clients.root]\nrole = ""\n', "clients.root.role"),
            ('[clients.root]\nrole = 1\n', "clients.root.role"),
            ('[clients]\nroot = "admin"\n', "clients.root"),
            ('clients = "root"\n', "[clients]"),
            ('[clients."-root"]\nrole = "admin"\n', "clients.-root"),
        ]:
            error = self.assertRaises(errors.BackupRemoteError, self.load, extra)
            self.assertEqual(error.code, errors.CONFIG_INVALID, extra)
            self.assertIn(mention, error.message, extra)
