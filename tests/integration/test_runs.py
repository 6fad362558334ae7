"""
Backups commanded through the real server over TLS, against real databases.

The pipeline's own tests restore every engine's artifact for every
compression; here the whole path is exercised: admission, events, status,
cancel, failures and racing duplicates.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from backupremote.server.machinery.toolfinder import defaultToolPath
from tests.databases import servers
from tests.integration.servers import startServer
from tests.processes import installEndlessZstd, runningWithArgv

class RunsOverTLSTests(TestCase):
    async def setUpRun(self, **serverConfig: Any) -> None:
        self.db = await servers.startPostgreSQL(self)
        self.server = await startServer(self, **serverConfig)
        self.client = self.server.client(self)
        self.config = await self.client.createDatabaseConfig(DatabaseConfigInput(
            name="shop", engine="postgresql", host=self.db.host, port=self.db.port,
            database=self.db.database, user=self.db.user, password=self.db.password,
            backup=BackupOptions(compression="gzip", verification="full")))

    async def test_backupCompletesWithEventsAndStatus(self) -> None:
        await self.setUpRun()
        events: list[Any] = []
        status = await self.client.executeBackup("run-1", self.config.id, scheduleId="nightly")
        self.assertEqual(status.options.compression, "gzip")
        final = await self.client.followRun("run-1", events.append)
        self.assertEqual(final.state, "completed", final)
        self.assertEqual(final.scheduleId, "nightly")
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1].kind, "complete")
        self.assertIn("dump", {e.stage for e in events})
        self.assertIn("verification", {t.stage for t in final.stageTimings})
        path = self.server.core.runs._store.artifactPath("run-1")
        with open(path, "rb") as handle:
            self.assertEqual(hashlib.file_digest(handle, "sha256").hexdigest(),
                             final.artifact.digest)
        self.assertTrue(final.artifact.name.startswith("shop-"))
        self.assertNotIn(self.db.password, self.server.config.logFile.getContent().decode())

    async def test_racingDuplicatesStartOneDump(self) -> None:
        await self.setUpRun()
        other = self.server.client(self)
        first, second = await DeferredList([
            self.client.executeBackup("same-run", self.config.id),
            other.executeBackup("same-run", self.config.id),
        ], fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual(sorted([first[1].duplicate, second[1].duplicate]), [False, True])
        final = await self.client.followRun("same-run")
        self.assertEqual(final.state, "completed")
        again = await other.executeBackup("same-run", self.config.id)
        self.assertTrue(again.duplicate)
        self.assertEqual(again.state, "completed")

    async def test_dumpFailureLeavesNothing(self) -> None:
        """The password changed since the config was saved: DUMP_FAILED, no files."""
        await self.setUpRun()
        await self.db.sql(f"alter user {self.db.user} password 'changed-elsewhere'")
        # preflight would refuse the run: test the dump itself by skipping it
        self.patch(self.server.core.databases, "preflight", self.passingPreflight)
        await self.client.executeBackup("fails", self.config.id)
        final = await self.client.followRun("fails")
        self.assertEqual((final.state, final.errorCode), ("failed", errors.DUMP_FAILED))
        self.assertIn("password authentication failed", final.errorMessage)
        self.assertNotIn(self.db.password, final.errorMessage)
        self.assertFalse(self.server.staging.runFolder("fails").exists())

    async def passingPreflight(self, configId: str, options: Any) -> Any:
        from backupremote.protocol.databases import PreflightReport
        return PreflightReport(ok=True, blockers=[], warnings=[], sizeEstimate=1)

    async def test_preflightBlocksBeforeAnythingStarts(self) -> None:
        await self.setUpRun()
        await self.db.sql(f"alter user {self.db.user} password 'changed-elsewhere'")
        with self.assertRaises(errors.BackupRemoteError) as raised:
            await self.client.executeBackup("blocked", self.config.id)
        self.assertEqual(raised.exception.code, errors.DB_AUTH_FAILED)
        with self.assertRaises(errors.BackupRemoteError) as missing:
            await self.client.getExecutionStatus("blocked")
        self.assertEqual(missing.exception.code, errors.NOT_FOUND)

    async def test_cancelMidDump(self) -> None:
        tools = FilePath(self.mktemp())
        tools.makedirs()
        endless = installEndlessZstd(tools)
        await self.setUpRun(toolPath=(tools.path, *defaultToolPath()))
        events: list[Any] = []
        await self.client.executeBackup("cancel-me", self.config.id,
                                        BackupOptions(compression="zstd"))
        following = self.client.followRun("cancel-me", events.append)
        while not any(e.stage == "dump" for e in events):
            from twisted.internet.task import deferLater
            await deferLater(reactor, 0.1, lambda: None)
        self.assertTrue(self.server.staging.runFolder("cancel-me").exists())
        await self.client.cancelBackup("cancel-me")
        final = await following
        self.assertEqual((final.state, final.errorCode), ("cancelled", errors.CANCELLED))
        self.assertFalse(self.server.staging.runFolder("cancel-me").exists())
        leftovers = runningWithArgv(endless)
        self.assertEqual(leftovers, [])
        with self.assertRaises(errors.BackupRemoteError) as raised:
            await self.client.cancelBackup("cancel-me")
        self.assertEqual(raised.exception.code, errors.CONFLICT)

    async def test_licenceWithoutExecuteFeature(self) -> None:
        await self.setUpRun()
        from backupremote.license import issueLicense, loadIssuerKey
        _, token = issueLicense(loadIssuerKey(self.server.folder.descendant(
            ["issuer", "issuer.key"])), "integration-client",
            features=("remote.control", "remote.db_config"))
        self.server.token = token
        limited = self.server.client(self)
        with self.assertRaises(errors.BackupRemoteError) as raised:
            await limited.executeBackup("no-licence", self.config.id)
        self.assertEqual(raised.exception.code, errors.LICENSE_FEATURE_MISSING)





class PostScriptRunTests(TestCase):
    async def setUpScripts(self) -> None:
        db = await servers.startSQLite(self)
        scripts = FilePath(self.mktemp())
        scripts.makedirs()
        self.marker = FilePath(self.mktemp())
        for name, body in [
            ("notify", f'echo "$BACKUPREMOTE_RUN_ID $BACKUPREMOTE_ARTIFACT_NAME" > '
                       f'{self.marker.path}; test -f "$BACKUPREMOTE_ARTIFACT" && echo done'),
            ("broken", "echo the upload failed >&2; exit 3"),
        ]:
            script = scripts.child(name)
            script.setContent(f"#!/bin/sh\n{body}\n".encode())
            script.chmod(0o700)
        self.server = await startServer(self, sqliteRoots=(FilePath(db.folder),),
                                        postScriptsDir=scripts)
        self.client = self.server.client(self)
        self.config = await self.client.createDatabaseConfig(DatabaseConfigInput(
            name="notes", engine="sqlite", path=db.path))

    async def test_scriptRunsWithTheRunsEnvironment(self) -> None:
        await self.setUpScripts()
        await self.client.executeBackup("s-ok", self.config.id,
                                        BackupOptions(postScript="notify"))
        final = await self.client.followRun("s-ok")
        self.assertEqual(final.state, "completed", final)
        self.assertEqual(final.scriptOutput.strip(), "done")
        self.assertEqual(self.marker.getContent().decode().split(),
                         ["s-ok", final.artifact.name])
        self.assertIn("script", {t.stage for t in final.stageTimings})

    async def test_failingScriptKeepsTheArtifact(self) -> None:
        await self.setUpScripts()
        await self.client.executeBackup("s-bad", self.config.id,
                                        BackupOptions(postScript="broken"))
        final = await self.client.followRun("s-bad")
        self.assertEqual((final.state, final.errorCode), ("failed", errors.SCRIPT_FAILED))
        self.assertIn("the upload failed", final.scriptOutput)
        self.assertIsNotNone(final.artifact)
        self.assertTrue(os.path.exists(self.server.core.runs._store.artifactPath("s-bad")))
