"""
Database configurations over AMP: CRUD, validation, concurrency, secrets.

Everything here runs in memory (iosim + Clock); connection tests and
preflight against real databases are in tests/integration.
"""

from __future__ import annotations

import json
import os
from typing import Any

from attrs import evolve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    DeleteDatabaseConfig,
    GetDatabaseConfigById,
    ListDatabaseConfigs,
    UpdateDatabaseConfig,
)
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.structured import converter
from tests.fixtures import ServerHarness

PASSWORD = "p@ss w0rd \"quoted\" \\ ünï"

POSTGRES = DatabaseConfigInput(
    name="shop", engine="postgresql", host="db1.example.net", database="shop",
    user="backup", password=PASSWORD, options={"sslmode": "require"},
)


class DatabaseConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = FilePath(self.mktemp())
        self.root.makedirs()
        self.harness = ServerHarness(self, sqliteRoots=(self.root,))
        self.loopback = self.harness.connect()
        self.loopback.auth(self.harness)

    def create(self, config: DatabaseConfigInput = POSTGRES) -> Any:
        return self.loopback.call(CreateDatabaseConfig, config=config)["config"]

    def refused(self, command: Any, **arguments: Any) -> errors.BackupRemoteError:
        return self.loopback.error(command, **arguments)

    def test_createShowsNoPassword(self) -> None:
        created = self.create()
        self.assertEqual((created.name, created.engine, created.port), ("shop", "postgresql", 5432))
        self.assertTrue(created.hasPassword)
        self.assertEqual(created.version, 1)
        fetched = self.loopback.call(GetDatabaseConfigById, id=created.id)["config"]
        self.assertEqual(fetched, created)
        self.assertNotIn(PASSWORD, repr(fetched) + json.dumps(converter.unstructure(fetched)))

    def test_listPages(self) -> None:
        for index in range(5):
            self.create(evolve(POSTGRES, name=f"db{index}"))
        page = self.loopback.call(ListDatabaseConfigs, offset=1, limit=2)["page"]
        self.assertEqual([c.name for c in page.items], ["db1", "db2"])
        self.assertEqual((page.total, page.offset), (5, 1))
        error = self.refused(ListDatabaseConfigs, offset=-1, limit=1000)
        self.assertEqual(error.code, errors.VALIDATION_FAILED)
        self.assertEqual(set(error.details["fields"]), {"offset", "limit"})

    def test_updateWithVersion(self) -> None:
        created = self.create()
        moved = self.refused(UpdateDatabaseConfig, id=created.id, version=1,
                             config=evolve(POSTGRES, host="evil.example", password=None))
        self.assertEqual(moved.code, errors.VALIDATION_FAILED)
        self.assertEqual(set(moved.details["fields"]), {"password"})
        updated = self.loopback.call(
            UpdateDatabaseConfig, id=created.id, version=1,
            config=evolve(POSTGRES, options={"sslmode": "require", "connect_timeout": "10"},
                          password=None))["config"]
        self.assertEqual((updated.options, updated.version, updated.hasPassword),
                         ({"sslmode": "require", "connect_timeout": "10"}, 2, True))
        stale = self.refused(UpdateDatabaseConfig, id=created.id, version=1,
                             config=evolve(POSTGRES, port=6000))
        self.assertEqual(stale.code, errors.CONFLICT)
        self.assertEqual(stale.details, {"currentVersion": 2})
        removed = self.loopback.call(
            UpdateDatabaseConfig, id=created.id, version=2,
            config=evolve(POSTGRES, port=5433, password=None, removePassword=True))["config"]
        self.assertEqual((removed.port, removed.hasPassword), (5433, False))

    def test_uniqueNames(self) -> None:
        self.create()
        error = self.refused(CreateDatabaseConfig, config=POSTGRES)
        self.assertEqual(error.code, errors.CONFLICT)
        other = self.create(evolve(POSTGRES, name="other"))
        error = self.refused(UpdateDatabaseConfig, id=other.id, version=1, config=POSTGRES)
        self.assertEqual(error.code, errors.CONFLICT)

    def test_notFound(self) -> None:
        for command, arguments in [
            (GetDatabaseConfigById, {"id": "nope"}),
            (DeleteDatabaseConfig, {"id": "nope"}),
            (UpdateDatabaseConfig, {"id": "nope", "version": 1, "config": POSTGRES}),
        ]:
            self.assertEqual(self.refused(command, **arguments).code, errors.NOT_FOUND)

    def test_delete(self) -> None:
        created = self.create()
        self.assertEqual(self.refused(DeleteDatabaseConfig, id=created.id, version=7).code,
                         errors.CONFLICT)
        self.loopback.call(DeleteDatabaseConfig, id=created.id, version=1)
        self.assertEqual(self.refused(GetDatabaseConfigById, id=created.id).code,
                         errors.NOT_FOUND)

    def test_deleteWhileRunning(self) -> None:
        created = self.create()
        self.harness.busyConfigs.using([created.id])
        error = self.refused(DeleteDatabaseConfig, id=created.id)
        self.assertEqual(error.code, errors.CONFLICT)
        self.assertIn("in progress", error.message)
        self.loopback.call(GetDatabaseConfigById, id=created.id)

    def test_validationNamesEveryField(self) -> None:
        bad = DatabaseConfigInput(
            name="../etc", engine="postgresql", host="bad host!", port=70000,
            database="x;drop", user=None, path="/etc/passwd", options={"evil": "1"},
            backup=BackupOptions(compression="rar", threads=-1, checksum="md5",
                                 verification="maybe", timeoutSeconds=1, format="tar",
                                 postScript="../../bin/sh"),
        )
        error = self.refused(CreateDatabaseConfig, config=bad)
        self.assertEqual(error.code, errors.VALIDATION_FAILED)
        self.assertEqual(set(error.details["fields"]), {
            "name", "host", "port", "database", "user", "path", "options.evil",
            "backup.compression", "backup.threads", "backup.checksum",
            "backup.verification", "backup.timeoutSeconds", "backup.format",
            "backup.postScript",
        })
        self.assertEqual(self.harness.store.connection.execute(
            "select count(*) from database_configs").fetchone()[0], 0)

    def test_engineRequirements(self) -> None:
        for config, fields in [
            (DatabaseConfigInput(name="a", engine="postgresql"), {"host", "database", "user"}),
            (DatabaseConfigInput(name="a", engine="mariadb"), {"host", "database", "user"}),
            (DatabaseConfigInput(name="a", engine="sqlite"), {"path"}),
            (DatabaseConfigInput(name="a", engine="sqlite", path=str(self.root.child("x").path),
                                 host="h"), {"host"}),
            (DatabaseConfigInput(name="a", engine="oracle"), {"engine"}),
            (evolve(POSTGRES, backup=BackupOptions(compression="none", level=3)), {"backup.level"}),
            (evolve(POSTGRES, backup=BackupOptions(compression="gzip", level=12)), {"backup.level"}),
        ]:
            error = self.refused(CreateDatabaseConfig, config=config)
            self.assertEqual(error.code, errors.VALIDATION_FAILED, config)
            self.assertTrue(fields <= set(error.details["fields"]), (fields, error.details))

    def test_unknownAndMistypedFieldsAreRefused(self) -> None:
        body = converter.unstructure(POSTGRES) | {"dataDir": "/", "port": "5432"}
        answer = self.loopback.sendBox({
            b"_command": b"createDatabaseConfig", b"_ask": b"1",
            b"config": json.dumps(body).encode(),
        })
        self.assertEqual(answer[b"_error_code"], b"VALIDATION_FAILED")
        fields = json.loads(answer[b"_error_description"])["details"]["fields"]
        self.assertEqual(set(fields), {"dataDir", "port"})

    def test_sqlitePathMustStayUnderRoots(self) -> None:
        inside = self.root.child("notes.sqlite3")
        inside.setContent(b"")
        created = self.create(DatabaseConfigInput(name="notes", engine="sqlite", path=inside.path))
        self.assertEqual(created.path, os.path.realpath(inside.path))
        outside = FilePath(self.mktemp())
        outside.makedirs()
        link = self.root.child("escape")
        os.symlink(outside.path, link.path)
        for path in [outside.child("x.db").path, link.child("x.db").path,
                     self.root.path + "/../x.db", "relative.db", self.root.path]:
            error = self.refused(CreateDatabaseConfig, config=DatabaseConfigInput(
                name="bad", engine="sqlite", path=path))
            self.assertEqual(error.code, errors.VALIDATION_FAILED, path)
            self.assertIn("path", error.details["fields"])
            self.assertNotIn(outside.path, error.message)

    def test_featureGated(self) -> None:
        loopback = self.harness.connect(port=2)
        loopback.auth(self.harness, license=self.harness.license(features=("remote.control",)))
        error = loopback.error(CreateDatabaseConfig, config=POSTGRES)
        self.assertEqual(error.code, errors.LICENSE_FEATURE_MISSING)
        self.assertEqual(error.details, {"feature": "remote.db_config"})

    def test_passwordEncryptedAtRest(self) -> None:
        self.create()
        self.harness.store.connection.execute("PRAGMA wal_checkpoint(FULL)")
        stored = b"".join(
            child.getContent() for child in self.harness.config.dataDir.walk()
            if child.isfile())
        self.assertNotIn(PASSWORD.encode("utf-8"), stored)
        key = self.harness.config.dataDir.child("secrets.key")
        self.assertEqual(os.stat(key.path).st_mode & 0o777, 0o600)
        sealed = self.harness.store.connection.execute(
            "select passwordSealed from database_configs").fetchone()[0]
        self.assertTrue(sealed.startswith("v1:"))


class NothingInvalidIsStoredTests(SynchronousTestCase):
    """Whatever is thrown at the server, a refusal leaves the store as it was."""

    def setUp(self) -> None:
        self.harness = ServerHarness(self)
        self.loopback = self.harness.connect()
        self.loopback.auth(self.harness)
        self.existing = self.loopback.call(CreateDatabaseConfig, config=POSTGRES)["config"]

    anyText = st.one_of(st.none(), st.text(max_size=40),
                        st.sampled_from(["", "db1", "127.0.0.1", "::1", "a b", "../x", "x" * 300]))
    anyConfig = st.fixed_dictionaries({
        "name": st.one_of(st.text(max_size=70), st.sampled_from(["shop", "ok", ""])),
        "engine": st.sampled_from(["postgresql", "mariadb", "sqlite", "firebird", "x", ""]),
        "host": anyText, "database": anyText, "user": anyText, "path": anyText,
        "password": anyText,
        "port": st.one_of(st.none(), st.integers(-10, 70000)),
        "options": st.dictionaries(st.sampled_from(["sslmode", "ssl", "charset", "zz"]),
                                   st.text(max_size=10), max_size=2),
        "backup": st.fixed_dictionaries({
            "compression": st.sampled_from(["none", "gzip", "zstd", "xz", "zip", "rar"]),
            "level": st.one_of(st.none(), st.integers(-2, 25)),
            "threads": st.integers(-1, 300),
            "timeoutSeconds": st.integers(0, 10**6),
        }),
    })

    @settings(max_examples=120, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(config=anyConfig, update=st.booleans(), version=st.integers(0, 3))
    def test_refusalsChangeNothing(self, config: dict[str, Any], update: bool,
                                   version: int) -> None:
        before = self.harness.store.connection.execute(
            "select * from database_configs order by id").fetchall()
        box = {b"config": json.dumps(config).encode()}
        if update:
            box |= {b"_command": b"updateDatabaseConfig", b"id": self.existing.id.encode(),
                    b"version": str(version).encode()}
        else:
            box |= {b"_command": b"createDatabaseConfig"}
        answer = self.loopback.sendBox({**box, b"_ask": b"1"})
        after = self.harness.store.connection.execute(
            "select * from database_configs order by id").fetchall()
        if b"_error_code" in answer:
            self.assertIn(answer[b"_error_code"], {b"VALIDATION_FAILED", b"CONFLICT"})
            self.assertEqual(before, after)
        else:
            self.assertNotEqual(before, after)
            # a success is a valid config: put the store back for the next example
            self.harness.store.connection.execute(
                "delete from database_configs where id != ?", (self.existing.id,))
            self.existing = self.loopback.call(GetDatabaseConfigById, id=self.existing.id)["config"]
