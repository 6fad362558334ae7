"""
``backupremote demo``: the whole job on loopback, with an embedded default.

In a throwaway folder: an issuer key and a licence, a server folder with its
certificate, a registered client, a SQLite database of some tens of MB.
Then, as a real deployment would: start the server on 127.0.0.1, add the
database from the client, test it, preflight it, back it up (zstd, sha256,
full verification) with live progress, then let the client's job runner
(the one the daemon and the other commands use) download the artifact
(resumable, verified), deliver it to ``./backups/`` (read back and checked)
and release the server's staging; print a summary, stop the server and
remove the folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath

from backupremote.cli.databases import describePreflight, describeTest
from backupremote.cli.jobs import JobView, raiseIfStopped
from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.cli.progress import duration, size
from backupremote.client.api import BackupRemoteClient
from backupremote.client.clientinit import createClientFolder
from backupremote.client.config import loadClientConfig
from backupremote.client.jobs import Job, JobRequest, LocalFolder, jobRunnerIn, oneServer
from backupremote.client.store import SQLiteClientStore
from backupremote.license import generateIssuerKeyPair, issueLicense, loadIssuerKey
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from backupremote.server.admin.serverinit import createServerFolder, registerClient
from backupremote.server.config import loadServerConfig
from backupremote.server.service import makeService
from backupremote.server.staging import StagingArea

if TYPE_CHECKING:
    from backupremote.reactors import ICommandReactor

DEMO_CLIENT = "demo-client"


def register(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run the whole job on loopback with an embedded SQLite database",
        epilog="example: backupremote demo --size-mb 40 --backups ./backups",
    )
    demo.add_argument("--size-mb", type=int, default=40,
                      help="size of the demo database in MB (default 40)")
    demo.add_argument("--backups", default="backups",
                      help="the destination folder (default ./backups)")
    demo.add_argument("--keep", metavar="DIR",
                      help="build in DIR (which must not exist) and keep it afterwards")
    demo.set_defaults(onReactor=runDemo)


def makeDatabase(path: str, sizeMB: int) -> int:
    """A SQLite database of about C{sizeMB} MB: text that compresses like real data."""
    words = ("invoice customer order shipped paid pending refund warehouse berlin paris "
             "lisbon oslo item quantity price discount note priority").split()
    with sqlite3.connect(path) as db:
        db.execute("create table orders (id integer primary key, customer text, "
                   "status text, total real, note text)")
        rows = max(1, sizeMB * 1_000_000 // 165)
        rng = uuid.uuid4().int
        batch = []
        for _ in range(rows):
            rng = (rng * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            note = " ".join(words[(rng >> (4 * k)) % len(words)] for k in range(14))
            batch.append((f"customer-{rng % 5000}", words[rng % 5], (rng % 100000) / 100,
                          note + f" #{rng:x}"))
            if len(batch) == 5000:
                db.executemany("insert into orders (customer, status, total, note) "
                               "values (?, ?, ?, ?)", batch)
                batch = []
        if batch:
            db.executemany("insert into orders (customer, status, total, note) "
                           "values (?, ?, ?, ?)", batch)
    return os.path.getsize(path)


def _step(output: Output, text: str) -> None:
    if output.showsProgress:
        output.out.write(f"• {text}\n")
        output.out.flush()


async def runDemo(reactor: ICommandReactor, args: argparse.Namespace, output: Output) -> int:
    started = time.monotonic()
    if args.keep:
        root = FilePath(args.keep)
        root.makedirs()
    else:
        root = FilePath(tempfile.mkdtemp(prefix="backupremote-demo-"))
    service = client = store = None
    timings: dict[str, float] = {}
    try:
        _step(output, f"working in {root.path}")
        databases = root.child("databases")
        databases.makedirs()
        database = databases.child("shop.sqlite3")
        mark = time.monotonic()
        dbSize = await deferToThread(makeDatabase, database.path, args.size_mb)
        timings["make database"] = time.monotonic() - mark
        _step(output, f"made a SQLite database of {size(dbSize)}")
        keyPath, pubPath = generateIssuerKeyPair(root.child("issuer"))
        folder = createServerFolder(root.child("server"), listen="ssl:0:interface=127.0.0.1",
                                    trustIssuers=[pubPath], sqliteRoots=[databases])
        serverConfig = loadServerConfig(folder.configPath)
        secret = registerClient(serverConfig, DEMO_CLIENT)
        _, token = issueLicense(loadIssuerKey(keyPath), DEMO_CLIENT, days=1)
        # its staging inside the demo's own folder: removed with it, never
        # left in the OS temp folder (nor mixed with a real server's)
        stagingTemp = root.child("staging-tmp")
        stagingTemp.makedirs()
        service = makeService(serverConfig, reactor, staging=StagingArea.forDataDir(
            serverConfig.dataDir, tempDir=stagingTemp))
        service.startService()
        port = (await service.getServiceNamed("listener").whenListening()).getHost().port
        _step(output, f"server listening on 127.0.0.1:{port} (TLS, pinned certificate)")
        clientConfig = createClientFolder(
            root.child("client"), f"127.0.0.1:{port}", DEMO_CLIENT,
            secret.encode("ascii"), token, fingerprints=[folder.fingerprint],
        )
        client = BackupRemoteClient.fromConfig(reactor, loadClientConfig(clientConfig))
        client.connection.service.startService()  # the demo owns its connection
        await client.session()
        _step(output, "client authenticated with its secret and licence")

        config = await client.createDatabaseConfig(DatabaseConfigInput(
            name="shop", engine="sqlite", path=database.path,
            backup=BackupOptions(compression="zstd", checksum="sha256", verification="full")))
        _step(output, f"database added on the server (id {config.id})")
        result = await client.testDatabaseConnection(configId=config.id)
        _step(output, describeTest(result))
        report = await client.preflight(config.id)
        _step(output, describePreflight(report).splitlines()[0])
        if not report.ok:
            output.err.write(describePreflight(report) + "\n")
            return EXIT_REFUSED

        store = SQLiteClientStore.inFolder(root.child("client"), reactor)
        runner = jobRunnerIn(reactor, root.child("client"), store, oneServer(client))
        view = _DemoView(output)
        job = await runner.start(JobRequest(
            str(uuid.uuid4()), config.id, downloadFolder=root.child("downloads").path,
            destinations=(LocalFolder(os.path.abspath(args.backups)),)), view)
        timings |= view.timings
        final = job.status
        assert final is not None
        if job.failedStep == "follow" or final.artifact is None:
            output.err.write(f"the backup ended {final.state}: {final.errorCode}: "
                             f"{final.errorMessage}\n")
            return EXIT_REFUSED
        raiseIfStopped(job)
        artifact = final.artifact
        delivered = FilePath(os.path.abspath(args.backups)).child(job.receipts[0].name)
        _step(output, f"delivered to {delivered.path} (read back and checked); server staging "
              "released")

        elapsed = time.monotonic() - started
        stages = {t.stage: (t.endedAt - t.startedAt).total_seconds()
                  for t in final.stageTimings if t.endedAt is not None}
        summary = {
            "database": {"engine": "sqlite", "sizeBytes": dbSize},
            "artifact": {"name": artifact.name, "sizeBytes": artifact.sizeBytes,
                         "checksum": artifact.checksum, "digest": artifact.digest,
                         "path": delivered.path},
            "compressionRatio": round(dbSize / artifact.sizeBytes, 2),
            "serverStages": stages, "clientSteps": timings, "seconds": round(elapsed, 2),
        }
        lines = [
            "", "summary",
            f"  {'database':<22}{size(dbSize)} (sqlite)",
            f"  {'artifact':<22}{artifact.name}, {size(artifact.sizeBytes)} "
            f"(ratio {dbSize / artifact.sizeBytes:.1f}:1)",
            f"  {artifact.checksum:<22}{artifact.digest}",
            f"  {'delivered to':<22}{delivered.path}",
        ]
        lines += [f"  {'server: ' + stage:<22}{seconds:6.2f} s" for stage, seconds in stages.items()]
        lines += [f"  {'client: ' + step:<22}{seconds:6.2f} s" for step, seconds in timings.items()]
        lines.append(f"  {'total':<22}{duration(elapsed)}")
        output.result(summary, "\n".join(lines))
        return 0
    finally:
        if client is not None:
            await client.close()
        if store is not None:
            await store.close()
        if service is not None:
            await service.stopService()
        if not args.keep:
            shutil.rmtree(root.path, ignore_errors=True)


class _DemoView(JobView):
    """The job's live progress, a line per step, and how long the client's steps took."""

    _NAMES = {"running": "backup", "completed": "backup", "downloaded": "download",
              "verified": "verify", "delivered": "delivery", "released": "release"}

    def __init__(self, output: Output) -> None:
        super().__init__(output)
        self._output = output
        self.timings: dict[str, float] = {}
        self._mark = time.monotonic()

    def stepDone(self, job: Job) -> None:
        now = time.monotonic()
        name = self._NAMES.get(job.state, job.state)
        self.timings[name] = self.timings.get(name, 0.0) + now - self._mark
        self._mark = now
        if job.state == "completed" and job.status is not None and job.status.artifact:
            artifact = job.status.artifact
            _step(self._output, f"backup staged on the server: {artifact.name} "
                  f"({size(artifact.sizeBytes)})")
