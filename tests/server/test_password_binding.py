"""
A stored password goes only where, and as securely as, it was given for.

Changing the target of a configuration (engine, host, port, user, database,
path) or any option that bears on transport security (PostgreSQL
C{sslmode}, MariaDB C{ssl}) without giving the password again is refused;
options that do not (timeouts, character sets) may change freely. The same
rule against a listener that records what psql sends is in
tests/integration/test_password_downgrade.py.
"""

from __future__ import annotations

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
    GetDatabaseConfigById,
    UpdateDatabaseConfig,
)
from backupremote.server.engines import defaultEngines
from tests.fixtures import ServerHarness

PASSWORD = "s3cret-password"

POSTGRES = DatabaseConfigInput(
    name="shop", engine="postgresql", host="db1.example.net", database="shop",
    user="backup", password=PASSWORD, options={"sslmode": "verify-full"},
)
MARIADB = DatabaseConfigInput(
    name="maria", engine="mariadb", host="db2.example.net", database="shop",
    user="backup", password=PASSWORD, options={"ssl": "true"},
)
FIREBIRD = DatabaseConfigInput(
    name="fb", engine="firebird", host="db3.example.net", database="/srv/fb/shop.fdb",
    user="SYSDBA", password=PASSWORD, options={"charset": "UTF8"},
)


class PasswordBindingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ServerHarness(self)
        self.loopback = self.harness.connect()
        self.loopback.auth(self.harness)

    def create(self, config: DatabaseConfigInput) -> Any:
        return self.loopback.call(CreateDatabaseConfig, config=config)["config"]

    def update(self, created: Any, config: DatabaseConfigInput) -> Any:
        return self.loopback.call(UpdateDatabaseConfig, id=created.id,
                                  version=created.version, config=config)["config"]

    def assertRefused(self, created: Any, config: DatabaseConfigInput, field: str) -> None:
        error = self.loopback.error(UpdateDatabaseConfig, id=created.id,
                                    version=created.version, config=config)
        self.assertEqual(error.code, errors.VALIDATION_FAILED)
        self.assertEqual(set(error.details["fields"]), {"password"})
        self.assertIn(field, error.message)
        self.assertIn("password must be given again", error.message)
        # nothing changed
        after = self.loopback.call(GetDatabaseConfigById, id=created.id)["config"]
        self.assertEqual(after, created)

    def test_sslmodeDowngradeNeedsThePassword(self) -> None:
        created = self.create(POSTGRES)
        for sslmode in ("disable", "allow", "prefer", "require"):
            self.assertRefused(created, evolve(POSTGRES, password=None,
                                               options={"sslmode": sslmode}),
                               "options.sslmode")
        # dropping the option falls back to libpq's default (prefer): refused too
        self.assertRefused(created, evolve(POSTGRES, password=None, options={}),
                           "options.sslmode")

    def test_sslmodeAddedNeedsThePassword(self) -> None:
        created = self.create(evolve(POSTGRES, options={}))
        self.assertRefused(created, evolve(POSTGRES, password=None,
                                           options={"sslmode": "disable"}),
                           "options.sslmode")

    def test_mariadbSslNeedsThePassword(self) -> None:
        created = self.create(MARIADB)
        self.assertRefused(created, evolve(MARIADB, password=None, options={"ssl": "false"}),
                           "options.ssl")
        self.assertRefused(created, evolve(MARIADB, password=None, options={}), "options.ssl")

    def test_givingThePasswordAgainAllowsIt(self) -> None:
        created = self.create(POSTGRES)
        updated = self.update(created, evolve(POSTGRES, options={"sslmode": "disable"}))
        self.assertEqual((updated.options, updated.hasPassword), ({"sslmode": "disable"}, True))
        removed = self.update(updated, evolve(POSTGRES, password=None, removePassword=True,
                                              options={"sslmode": "prefer"}))
        self.assertEqual((removed.options, removed.hasPassword), ({"sslmode": "prefer"}, False))
        # without a stored password there is nothing to protect
        again = self.update(removed, evolve(POSTGRES, password=None, options={}))
        self.assertEqual(again.options, {})

    def test_harmlessOptionsKeepThePassword(self) -> None:
        pg = self.create(POSTGRES)
        updated = self.update(pg, evolve(POSTGRES, password=None, options={
            "sslmode": "verify-full", "connect_timeout": "5"}))
        self.assertTrue(updated.hasPassword)
        maria = self.create(MARIADB)
        self.assertTrue(self.update(maria, evolve(MARIADB, password=None, options={
            "ssl": "true", "connect_timeout": "5"})).hasPassword)
        firebird = self.create(FIREBIRD)
        self.assertTrue(self.update(firebird, evolve(FIREBIRD, password=None, options={
            "charset": "WIN1252", "role": "BACKUP"})).hasPassword)

    def test_everyEngineDeclaresItsHarmlessOptions(self) -> None:
        """No transport-security option is declared harmless by mistake."""
        for name, engine in defaultEngines().items():
            self.assertLessEqual(set(engine.optionsKeepingPassword), set(engine.optionNames),
                                 name)
            self.assertFalse({"sslmode", "ssl", "sslrootcert", "ssl-verify-server-cert",
                              "wirecrypt"} & set(engine.optionsKeepingPassword), name)

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(before=st.sampled_from([None, "disable", "prefer", "require", "verify-full"]),
           after=st.sampled_from([None, "disable", "allow", "prefer", "require", "verify-ca",
                                  "verify-full"]))
    def test_anySslmodeChange(self, before: str | None, after: str | None) -> None:
        """Any change of sslmode without the password is refused, whatever the direction."""
        def withMode(mode: str | None) -> dict[str, str]:
            return {} if mode is None else {"sslmode": mode}

        created = self.create(evolve(POSTGRES, name="fuzz", options=withMode(before)))
        try:
            change = evolve(POSTGRES, name="fuzz", password=None, options=withMode(after))
            if before == after:
                self.assertTrue(self.update(created, change).hasPassword)
            else:
                self.assertRefused(created, change, "options.sslmode")
        finally:
            self.harness.store.connection.execute(
                "delete from database_configs where id = ?", (created.id,))
