"""
``backupremote demo``: the whole job on loopback, with an embedded default.

In a throwaway folder: an issuer key and a licence, a server folder with its
certificate, a registered client, a SQLite database of some tens of MB.
Then, as a real deployment would: start the server on 127.0.0.1, add the
database from the client, test it, preflight it, back it up (zstd, sha256,
full verification) with live progress, download the artifact (resumable,
verified), deliver it to ``./backups/`` (read back and checked), release the
server's staging, print a summary, stop the server and remove the folder.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from typing import Any

from twisted.internet.threads import deferToThread
from twisted.python.filepath import FilePath

from backupremote.cli.databases import describePreflight, describeTest
from backupremote.cli.output import EXIT_REFUSED, Output
from backupremote.cli.progress import ProgressView, duration, size
from backupremote.cli.transfers import DownloadView
from backupremote.client.api import BackupRemoteClient
from backupremote.client.config import loadClientConfig
from backupremote.client.folder import createClientFolder
from backupremote.protocol.errors import VERIFICATION_FAILED, BackupRemoteError
from backupremote.license import generateIssuerKeyPair, issueLicense, loadIssuerKey
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from backupremote.server.config import loadServerConfig
from backupremote.server.folder import createServerFolder, registerClient
from backupremote.server.service import makeService

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
    if not output.asJSON:
        output.out.write(f"• {text}\n")
        output.out.flush()


def deliver(downloaded: FilePath, destination: FilePath, digest: str) -> FilePath:
    """Copy into the destination folder, read it back, check it, then rename into place."""
    destination.makedirs(ignoreExistingDirectory=True)
    final = destination.child(downloaded.basename())
    part = destination.child(f".{downloaded.basename()}.{os.getpid()}.part")
    shutil.copyfile(downloaded.path, part.path)
    os.chmod(part.path, 0o600)
    with open(part.path, "rb") as handle:
        os.fsync(handle.fileno())
        check = hashlib.file_digest(handle, "sha256").hexdigest()
    if check != digest:
        part.remove()
        raise BackupRemoteError(VERIFICATION_FAILED, f"the copy in {destination.path} does "
                                "not match the artifact's hash; nothing was delivered")
    os.replace(part.path, final.path)
    return final


async def runDemo(reactor: Any, args: argparse.Namespace, output: Output) -> int:
    started = time.monotonic()
    if args.keep:
        root = FilePath(args.keep)
        root.makedirs()
    else:
        root = FilePath(tempfile.mkdtemp(prefix="backupremote-demo-"))
    service = client = None
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
        service = makeService(serverConfig, reactor)
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

        view = None if output.asJSON else ProgressView(output.out, output.out.isatty())
        runId = str(uuid.uuid4())
        mark = time.monotonic()
        await client.executeBackup(runId, config.id)
        final = await client.followRun(runId, view)
        timings["backup"] = time.monotonic() - mark
        if final.state != "completed" or final.artifact is None:
            output.err.write(f"the backup ended {final.state}: {final.errorCode}: "
                             f"{final.errorMessage}\n")
            return EXIT_REFUSED
        artifact = final.artifact
        _step(output, f"backup staged on the server: {artifact.name} ({size(artifact.sizeBytes)})")

        mark = time.monotonic()
        downloadView = None if output.asJSON else DownloadView(output.out, output.out.isatty())
        downloaded = await client.download(runId, root.child("downloads"), downloadView)
        timings["download"] = time.monotonic() - mark
        mark = time.monotonic()
        delivered = deliver(downloaded, FilePath(os.path.abspath(args.backups)), artifact.digest
                            if artifact.checksum == "sha256" else _sha256(downloaded))
        timings["delivery"] = time.monotonic() - mark
        await client.releaseArtifact(runId)
        _step(output, f"delivered to {delivered.path}; server staging released")

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
        if service is not None:
            await service.stopService()
        if not args.keep:
            shutil.rmtree(root.path, ignore_errors=True)


def _sha256(path: FilePath) -> str:
    with open(path.path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
