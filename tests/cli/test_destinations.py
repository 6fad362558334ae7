"""
``backupremote dest ...`` and ``backupremote queue ...`` as a user types
them: the command line parsed by the CLI's own parser and run by its own
L{commandOnReactor} (what the console script runs inside C{react}) against a
client folder made by C{client init}'s L{createClientFolder}, its real
SQLite store and a real local folder destination. One test runs the
console script itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.cli.main import buildParser, commandOnReactor
from backupremote.cli.output import Output
from backupremote.client.clientinit import createClientFolder
from backupremote.client.delivery.model import DELIVERED, FAILED, RETRYING, QueueItem
from backupremote.client.delivery.store import DeliveryStore
from backupremote.client.store import SQLiteClientStore
from backupremote.license import generateIssuerKeyPair, loadIssuerKey
from backupremote.license.issue import issueLicense
from backupremote.tls.certificates import fingerprintOfPem, generateServerCertificate

UTC = timezone.utc
SECRET = "correct horse battery staple"
PIN = ":".join(["AB"] * 32)
#: the console script of the venv, importing this tree (PYTHONPATH)
PROGRAM = os.path.join(os.path.dirname(sys.executable), "backupremote")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def makeClientFolder(case: TestCase) -> FilePath:
    """A client folder as C{client init} writes it (no server needs to run)."""
    base = FilePath(case.mktemp())
    base.makedirs()
    keyPath, _ = generateIssuerKeyPair(base.child("issuer"))
    _, token = issueLicense(loadIssuerKey(keyPath), "laptop")
    _, certPem = generateServerCertificate(["localhost"])
    return createClientFolder(base.child("client"), "127.0.0.1:7443", "laptop", b"s3cr3t",
                              token, fingerprints=[fingerprintOfPem(certPem)])


class CommandLineTestCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.config = makeClientFolder(self)
        self.dataDir = self.config.parent()
        self.target = FilePath(self.mktemp())
        self.target.makedirs()

    async def cli(self, *argv: str, stdin: str = "") -> tuple[int, str, str]:
        """Exit code, stdout and stderr of C{backupremote --config ... ARGV}."""
        args = buildParser(whole=False).parse_args(["--config", self.config.path, *argv])
        out, err = io.StringIO(), io.StringIO()
        self.patch(sys, "stdin", io.StringIO(stdin))
        code = await commandOnReactor(reactor, args, Output(args.json, out, err))
        return code, out.getvalue(), err.getvalue()

    async def ok(self, *argv: str, stdin: str = "") -> Any:
        """The JSON result of a command that must succeed."""
        code, out, err = await self.cli(*argv, "--json", stdin=stdin)
        self.assertEqual(code, 0, err)
        self.assertNotIn(SECRET, out + err)
        return json.loads(out)

    async def refused(self, *argv: str, code: str, exit: int = 6, stdin: str = "") -> Any:
        """The JSON error of a command that must fail with the registry C{code}."""
        before = await self.ok("dest", "list")
        status, out, err = await self.cli(*argv, "--json", stdin=stdin)
        self.assertEqual((status, out), (exit, ""), err)
        error = json.loads(err)
        self.assertEqual(error["errorCode"], code, error)
        self.assertTrue(error["errorMessage"] and error["action"])
        self.assertNotIn(SECRET, err)
        # nothing persisted
        self.assertEqual(await self.ok("dest", "list"), before)
        # the same refusal for a person: the code, the message, what to do
        status, out, err = await self.cli(*argv, stdin=stdin)
        self.assertEqual(status, exit)
        self.assertIn(f"error {code}: ", err)
        self.assertIn("what to do: ", err)
        return error

    async def addLocal(self, name: str = "usb", *options: str) -> Any:
        return await self.ok("dest", "add", name, "--type", "local", "--url",
                             "file://" + self.target.path, *options)

    async def withStore(self, work: Any) -> Any:
        store = SQLiteClientStore.inFolder(self.dataDir, reactor)
        try:
            await store.opened()
            return await work(DeliveryStore(store, lambda: datetime.now(UTC)))
        finally:
            await store.close()


class DestinationCommandTests(CommandLineTestCase):
    async def test_addListShowUpdateRemove(self) -> None:
        added = await self.addLocal("usb", "--keep-last", "3", "--gfs", "7,4,12,3")
        self.assertEqual((added["name"], added["type"], added["url"], added["revision"]),
                         ("usb", "local", "file://" + self.target.path, 1))
        self.assertEqual(added["retention"], {"keepLast": 3, "keepDays": None,
                                              "gfs": [7, 4, 12, 3]})
        self.assertIs(added["hasSecret"], False)
        self.assertEqual(added["fingerprints"], [])
        uuid.UUID(added["id"])

        listed = await self.ok("dest", "list")
        self.assertEqual([d["name"] for d in listed], ["usb"])
        code, text, _ = await self.cli("dest", "list")
        self.assertIn("usb", text)
        self.assertIn("keep the last 3", text)

        for key in ("usb", added["id"]):
            shown = await self.ok("dest", "show", key)
            self.assertEqual((shown["id"], shown["deliveries"]), (added["id"], []))

        updated = await self.ok("dest", "update", "usb", "--name", "disk", "--keep-days", "30")
        self.assertEqual((updated["name"], updated["revision"]), ("disk", 2))
        self.assertEqual(updated["retention"]["keepDays"], 30)
        self.assertEqual(updated["retention"]["keepLast"], 3)
        kept = await self.ok("dest", "update", "disk", "--keep-all")
        self.assertEqual(kept["retention"], {"keepLast": None, "keepDays": None, "gfs": None})
        await self.refused("dest", "update", "disk", "--revision", "1", "--keep-last", "2",
                           code="CONFLICT")

        removed = await self.ok("dest", "remove", "disk")
        self.assertEqual(removed, {"removed": added["id"], "name": "disk"})
        self.assertEqual(await self.ok("dest", "list"), [])
        code, text, _ = await self.cli("dest", "list")
        self.assertIn("no destinations", text)

    async def test_secretSealedNeverEchoed(self) -> None:
        """--password-stdin: stored sealed, never shown, never in the store's clear text."""
        added = await self.ok("dest", "add", "ftpbox", "--type", "ftps", "--url",
                              "ftps://backup@127.0.0.1:2121/srv", "--password-stdin",
                              "--fingerprint", "sha256:" + "ab" * 32, stdin=SECRET + "\n")
        self.assertIs(added["hasSecret"], True)
        self.assertEqual(added["fingerprints"], [PIN])
        code, text, err = await self.cli("dest", "show", "ftpbox")
        self.assertEqual(code, 0)
        self.assertIn("password:  stored (encrypted)", text)
        self.assertIn(f"TLS pin:   {PIN}", text)
        self.assertNotIn(SECRET, text + err)
        raw = self.dataDir.child("client.sqlite3").getContent()
        self.assertNotIn(SECRET.encode(), raw)

        # a second pin for a rotation, then back to none
        rotated = await self.ok("dest", "update", "ftpbox", "--fingerprint", PIN,
                                "--fingerprint", "CD" * 32)
        self.assertEqual(rotated["fingerprints"], [PIN, ":".join(["CD"] * 32)])
        self.assertTrue(rotated["hasSecret"])
        cleared = await self.ok("dest", "update", "ftpbox", "--no-fingerprints")
        self.assertEqual(cleared["fingerprints"], [])
        new = await self.ok("dest", "update", "ftpbox", "--password-stdin",
                            stdin="another one\n")
        self.assertEqual(new["revision"], 4)

    async def test_badInput(self) -> None:
        await self.addLocal("usb")
        url = ("--url", "file://" + self.target.path)
        error = await self.refused("dest", "add", "x", "--type", "local", "--url",
                                   "gopher://h/x", code="VALIDATION_FAILED")
        self.assertIn("url", error["details"]["fields"])
        error = await self.refused("dest", "add", "x", "--type", "dropbox", *url,
                                   code="VALIDATION_FAILED")
        self.assertIn("type", error["details"]["fields"])
        error = await self.refused("dest", "add", "x", "--type", "sftp", *url,
                                   code="VALIDATION_FAILED")
        self.assertIn("is sftp, but the URL is of type local", error["errorMessage"])
        error = await self.refused("dest", "add", "x", "--type", "ftp", "--url",
                                   "ftp://u@127.0.0.1/x", code="VALIDATION_FAILED")
        self.assertIn("--password-stdin", error["details"]["fields"]["password"])
        await self.refused("dest", "add", "usb", "--type", "local", *url, code="CONFLICT")
        await self.refused("dest", "add", "x", "--type", "ftp", "--url",
                           "ftp://u@127.0.0.1/x", "--password-stdin", stdin="\n",
                           code="CONFIG_INVALID", exit=3)
        for flag, value in (("--keep-last", "0"), ("--keep-last", "abc"),
                            ("--keep-days", "-1"), ("--keep-days", "1e3"),
                            ("--gfs", "7,4"), ("--gfs", "0,0,0,0")):
            error = await self.refused("dest", "add", "x", "--type", "local", *url, flag,
                                       value, code="VALIDATION_FAILED")
            self.assertTrue(any(f.startswith("retention.") for f in error["details"]["fields"]),
                            error)
            await self.refused("dest", "update", "usb", flag, value, code="VALIDATION_FAILED")
        error = await self.refused("dest", "add", "x", "--type", "local", *url,
                                   "--fingerprint", PIN, code="VALIDATION_FAILED")
        self.assertIn("fingerprints", error["details"]["fields"])
        error = await self.refused("dest", "add", "x", "--type", "webdav", "--url",
                                   "webdav+https://h/dav", "--fingerprint", "SHA256:zz",
                                   code="VALIDATION_FAILED")
        self.assertIn("64 hex digits", error["details"]["fields"]["fingerprints"])
        for action in ("show", "update", "remove", "test", "prune"):
            error = await self.refused("dest", action, "ubs", code="NOT_FOUND")
            self.assertEqual(error["details"], {"didYouMean": "usb"})

    async def test_test(self) -> None:
        await self.addLocal("usb")
        result = await self.ok("dest", "test", "usb")
        self.assertEqual((result["destination"], result["ok"]), ("usb", True))
        self.assertEqual(self.target.listdir(), [])  # the probe was removed
        await self.ok("dest", "add", "gone", "--type", "local", "--url",
                      "file://" + self.target.child("missing").path)
        error = await self.refused("dest", "test", "gone", code="DESTINATION_REFUSED")
        self.assertIn("missing", error["errorMessage"])

    async def test_prune(self) -> None:
        """--dry-run deletes nothing; then only our old copy goes, never a file we did not write."""
        added = await self.addLocal("usb", "--keep-last", "1")
        now = datetime.now(UTC)
        names = ("2026-11-01/db-1.sql.zst", "2026-11-02/db-2.sql.zst")
        for index, name in enumerate(names):
            self.target.preauthChild(name).parent().makedirs(ignoreExistingDirectory=True)
            self.target.preauthChild(name).setContent(b"x" * (10 + index))
        self.target.child("theirs.txt").setContent(b"not ours")

        async def deliver(deliveries: DeliveryStore) -> None:
            for index, name in enumerate(names):
                item = queueItem(added["id"], "usb", name, 10 + index, now)
                (queued,) = await deliveries.enqueue([item])
                await deliveries.move(queued, DELIVERED, method="read-back",
                                      verifiedAt=now + timedelta(minutes=index))
        await self.withStore(deliver)

        dry = await self.ok("dest", "prune", "usb", "--dry-run")
        self.assertEqual(dry, {"destination": "usb", "dryRun": True, "delete": [names[0]],
                               "keep": [names[1]], "temporary": [], "notOurs": ["theirs.txt"]})
        self.assertTrue(self.target.preauthChild(names[0]).exists())
        code, text, _ = await self.cli("dest", "prune", "usb", "--dry-run")
        self.assertIn("would delete 1 of our copies", text)
        self.assertIn("left alone: 1 file(s) we did not write", text)

        done = await self.ok("dest", "prune", "usb")
        self.assertEqual((done["dryRun"], done["delete"]), (False, [names[0]]))
        self.assertFalse(self.target.preauthChild(names[0]).exists())
        self.assertTrue(self.target.preauthChild(names[1]).exists())
        self.assertTrue(self.target.child("theirs.txt").exists())

        shown = await self.ok("dest", "show", "usb")
        self.assertEqual(sorted(d["name"] for d in shown["deliveries"]), list(names))
        await self.refused("dest", "remove", "nope", code="NOT_FOUND")


def queueItem(destinationId: str, destination: str, name: str, size: int,
              now: datetime, runId: str | None = None) -> QueueItem:
    return QueueItem(
        id=str(uuid.uuid4()), runId=runId or str(uuid.uuid4()), server="default",
        destinationId=destinationId, destination=destination, scheduleId=None, name=name,
        source="/nowhere/" + name, size=size, sha256="0" * 64, state="pending", attempts=0,
        createdAt=now, updatedAt=now)


class QueueCommandTests(CommandLineTestCase):
    #: what DESIGN.md fixes for a queue item in JSON
    KEYS = {"id", "runId", "destination", "state", "reason", "nextAttemptAt"}

    async def test_queue(self) -> None:
        self.assertEqual(await self.ok("queue"), [])
        code, text, _ = await self.cli("queue")
        self.assertEqual((code, text.strip()), (0, "the queue is empty"))

        added = await self.addLocal("usb")
        now = datetime.now(UTC).replace(microsecond=0)
        later = now + timedelta(minutes=5)

        async def fill(deliveries: DeliveryStore) -> list[QueueItem]:
            items = [queueItem(added["id"], "usb", f"2026-11-0{i}/f.bin", 1, now)
                     for i in (1, 2, 3)]
            queued = await deliveries.enqueue(items)
            return [
                await deliveries.move(queued[0], FAILED, attempts=5,
                                      errorCode="DESTINATION_UNREACHABLE",
                                      reason="DESTINATION_UNREACHABLE: nas:22 refused"),
                await deliveries.move(queued[1], RETRYING, attempts=1, nextAttemptAt=later,
                                      errorCode="TIMEOUT", reason="TIMEOUT: no answer"),
                await deliveries.move(queued[2], DELIVERED, method="read-back",
                                      verifiedAt=now),
            ]
        failed, retrying, delivered = await self.withStore(fill)

        rows = await self.ok("queue")
        self.assertEqual({r["id"] for r in rows}, {failed.id, retrying.id})
        for row in rows:
            self.assertLessEqual(self.KEYS, set(row))
            self.assertEqual(row["destination"], "usb")
        byId = {r["id"]: r for r in rows}
        self.assertEqual(byId[failed.id]["state"], "failed")
        self.assertEqual(byId[failed.id]["reason"], "DESTINATION_UNREACHABLE: nas:22 refused")
        self.assertIsNone(byId[failed.id]["nextAttemptAt"])
        self.assertEqual((byId[retrying.id]["state"], byId[retrying.id]["nextAttemptAt"]),
                         ("retrying", later.isoformat().replace("+00:00", "Z")))
        self.assertEqual({r["state"] for r in await self.ok("queue", "--all")},
                         {"failed", "retrying", "delivered"})
        code, text, _ = await self.cli("queue")
        self.assertIn("why: DESTINATION_UNREACHABLE: nas:22 refused", text)
        self.assertIn(f"retry a failed one: backupremote queue retry {failed.id[:8]}", text)

        retried = await self.ok("queue", "retry", failed.id[:8])
        self.assertLessEqual(self.KEYS, set(retried))
        self.assertEqual((retried["id"], retried["state"], retried["attempts"]),
                         (failed.id, "pending", 0))
        self.assertIn("retry asked (was failed", retried["reason"])
        error = await self.refused("queue", "retry", delivered.id, code="CONFLICT")
        self.assertIn("delivered already", error["errorMessage"])
        await self.refused("queue", "retry", str(uuid.uuid4()), code="NOT_FOUND")
        # a destination with a delivery in the queue stays
        await self.refused("dest", "remove", "usb", code="CONFLICT")


class ConsoleScriptTests(CommandLineTestCase):
    """The installed C{backupremote} program: exit codes, JSON, the secret unseen."""

    timeout = 120

    def program(self, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
        env["PYTHONPATH"] = ROOT
        return subprocess.run([PROGRAM, *argv, "--config", self.config.path], input=stdin,
                              capture_output=True, text=True, timeout=60, env=env)

    def test_program(self) -> None:
        done = self.program("dest", "add", "box", "--type", "s3", "--url",
                        "s3+https://AKID@127.0.0.1:9000/bucket/db", "--password-stdin",
                        "--fingerprint", PIN, "--json", stdin=SECRET + "\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(json.loads(done.stdout)["fingerprints"], [PIN])
        done = self.program("dest", "show", "box")
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("s3+https://AKID@127.0.0.1:9000/bucket/db", done.stdout)
        self.assertNotIn(SECRET, done.stdout + done.stderr)
        done = self.program("dest", "add", "box2", "--type", "local", "--url", "file:///x",
                        "--keep-last", "zero", "--json")
        self.assertEqual(done.returncode, 6)
        self.assertEqual(json.loads(done.stderr)["errorCode"], "VALIDATION_FAILED")
        done = self.program("queue", "retry", "nothing8", "--json")
        self.assertEqual((done.returncode, json.loads(done.stderr)["errorCode"]),
                         (6, "NOT_FOUND"))
