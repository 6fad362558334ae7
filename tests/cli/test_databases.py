"""``backupremote db ...``: names that are close, and ``db add`` testing what it stored."""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime, timezone
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.databases import addCommand, configIdOf
from backupremote.cli.main import buildParser
from backupremote.cli.output import Output
from backupremote.protocol.databases import ConnectionTestResult, DatabaseConfig
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.errors import (
    HOST_UNREACHABLE,
    LICENSE_FEATURE_MISSING,
    NOT_FOUND,
    BackupRemoteError,
)


def config(name: str, id: str) -> DatabaseConfig:
    now = datetime(2026, 11, 29, tzinfo=timezone.utc)
    return DatabaseConfig(id=id, name=name, engine="postgresql", host="db1", port=5432,
                          database=name, user="backup", hasPassword=False, path=None,
                          options={}, backup=BackupOptions(), version=1, createdAt=now,
                          updatedAt=now)


class FakeClient:
    def __init__(self, configs: list[DatabaseConfig], test: Any = None) -> None:
        self.configs = configs
        self.test = test
        self.tested: list[str] = []

    def allDatabaseConfigs(self) -> Deferred[list[DatabaseConfig]]:
        return succeed(self.configs)

    def createDatabaseConfig(self, given: Any) -> Deferred[DatabaseConfig]:
        created = config(given.name, "id-new")
        self.configs.append(created)
        return succeed(created)

    def testDatabaseConnection(self, configId: str) -> Deferred[ConnectionTestResult]:
        self.tested.append(configId)
        return fail(self.test) if isinstance(self.test, Exception) else succeed(self.test)


class DidYouMeanTests(SynchronousTestCase):
    def test_closeName(self) -> None:
        client = FakeClient([config("shop", "id-1"), config("notes", "id-2")])
        error = self.failureResultOf(Deferred.fromCoroutine(configIdOf(client, "shopp")),
                                     BackupRemoteError).value
        self.assertEqual(error.code, NOT_FOUND)
        self.assertIn("did you mean `shop`?", error.message)
        self.assertEqual(error.details, {"didYouMean": ["shop"]})

    def test_nothingClose(self) -> None:
        client = FakeClient([config("shop", "id-1")])
        error = self.failureResultOf(Deferred.fromCoroutine(configIdOf(client, "warehouse")),
                                     BackupRemoteError).value
        self.assertNotIn("did you mean", error.message)
        self.assertEqual(error.details, {})


class AddTestsTheConnectionTests(SynchronousTestCase):
    def add(self, client: FakeClient, *extra: str, asJSON: bool = False) -> str:
        args = buildParser().parse_args(["db", "add", "shop", "--engine", "postgresql",
                                         "--host", "db1", "--database", "shop", "--user", "b",
                                         *extra])
        out = io.StringIO()
        code = self.successResultOf(Deferred.fromCoroutine(
            addCommand(client, args, Output(asJSON, out, io.StringIO()))))
        self.assertEqual(code, 0)
        return out.getvalue()

    def test_unreachableIsStoredAndSaid(self) -> None:
        client = FakeClient([], ConnectionTestResult(
            ok=False, reason=HOST_UNREACHABLE, message="could not connect: refused"))
        out = self.add(client)
        self.assertEqual(client.tested, ["id-new"])
        self.assertIn("stored on the server", out)
        self.assertIn("connection failed: HOST_UNREACHABLE", out)
        self.assertIn("`backupremote db test shop`", out)

    def test_json(self) -> None:
        client = FakeClient([], ConnectionTestResult(ok=True, reason=None, message="ok",
                                                      serverVersion="16.4"))
        shown = json.loads(self.add(client, asJSON=True))
        self.assertEqual(shown["id"], "id-new")
        self.assertIs(shown["connectionTest"]["ok"], True)

    def test_noTest(self) -> None:
        client = FakeClient([])
        out = self.add(client, "--no-test")
        self.assertEqual(client.tested, [])
        self.assertIn("not tested: `backupremote db test shop`", out)

    def test_licenceWithoutTesting(self) -> None:
        client = FakeClient([], BackupRemoteError(LICENSE_FEATURE_MISSING, "no testing"))
        out = self.add(client)
        self.assertIn("LICENSE_FEATURE_MISSING", out)
        self.assertIn("stored all the same", out)
