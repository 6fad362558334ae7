"""
Metrics and logs after a real run: a real server (TLS, the real SQLite
pipeline) and the client's job runner, each serving its registry on its own
/metrics endpoint, both scraped over HTTP and parsed as Prometheus' text
format; then the two JSON logs, grepped for the runId.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import treq
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from backupremote.client.jobs import JobRequest, LocalFolder, jobRunnerIn, oneServer
from backupremote.client.store import SQLiteClientStore
from backupremote.logfile import JSONLogFileService
from backupremote.metrics import ClientMetrics, MetricsConfig, MetricsService
from backupremote.protocol.databases import DatabaseConfigInput
from tests.databases import servers
from tests.integration.servers import CLIENT_ID, startServer

LOOPBACK = "tcp:0:interface=127.0.0.1"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition, by name and labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def scrape(port: int, **headers: str) -> tuple[int, str]:
    response = await treq.get(f"http://127.0.0.1:{port}/metrics", headers=headers,
                              timeout=10, persistent=False)
    return response.code, await response.text("utf-8")


class MetricsAndLogsAfterARealRunTests(TestCase):
    timeout = 120

    async def test_scrapeBothDaemonsAfterARun(self) -> None:
        db = await servers.startSQLite(self)
        server = await startServer(self, sqliteRoots=(FilePath(db.folder),),
                                   metrics=MetricsConfig(LOOPBACK))
        serverPort = (await server.service.getServiceNamed("metrics").whenListening()
                      ).getHost().port
        client = server.client(self)
        database = await client.createDatabaseConfig(DatabaseConfigInput(
            name="notes", engine="sqlite", path=db.path))

        # the client's side: its log file, its metrics endpoint, its job runner
        folder = FilePath(self.mktemp())
        clientLog = folder.descendant(["logs", "client.jsonl"])
        logService = JSONLogFileService(clientLog, defaults={"clientId": CLIENT_ID})
        logService.startService()
        self.addCleanup(logService.stopService)
        metrics = ClientMetrics(reactor)
        endpoint = MetricsService(reactor, MetricsConfig(LOOPBACK), metrics.registry)
        endpoint.startService()
        self.addCleanup(endpoint.stopService)
        clientPort = (await endpoint.whenListening()).getHost().port
        store = SQLiteClientStore.inFolder(folder.child("data"), reactor)
        self.addCleanup(store.close)
        runner = jobRunnerIn(reactor, folder.child("data"), store, oneServer(client))
        nas = folder.child("nas")
        nas.makedirs()

        runId = str(uuid.uuid4())
        job = await runner.start(JobRequest(runId, database.id, scheduleId="nightly-id",
                                            destinations=(LocalFolder(nas.path),)),
                                 metrics.watchJob(runId))
        self.assertEqual(job.state, "released", job)
        size = job.artifact.sizeBytes

        code, text = await scrape(serverPort)
        self.assertEqual(code, 200)
        found = samples(text)
        self.assertEqual(found[("backupremote_runs_total", frozenset({("state", "completed")}))], 1)
        self.assertEqual(found[("backupremote_run_duration_seconds_count",
                                frozenset({("engine", "sqlite"), ("state", "completed")}))], 1)
        self.assertEqual(found[("backupremote_stage_duration_seconds_count",
                                frozenset({("stage", "dump")}))], 1)
        self.assertEqual(found[("backupremote_transfer_sent_bytes_total", frozenset())], size)
        self.assertEqual(found[("backupremote_transfers_ended_total",
                                frozenset({("outcome", "complete")}))], 1)
        self.assertEqual(found[("backupremote_auth_succeeded_total", frozenset())], 1)
        self.assertEqual(found[("backupremote_staged_artifacts", frozenset())], 0)
        self.assertEqual(found[("backupremote_connections", frozenset())], 1)
        self.assertEqual(found[("backupremote_license_denied_total", frozenset())]
                         if ("backupremote_license_denied_total", frozenset()) in found else 0, 0)

        code, text = await scrape(clientPort)
        self.assertEqual(code, 200)
        found = samples(text)
        self.assertEqual(found[("backupremote_runs_total", frozenset({("state", "released")}))], 1)
        self.assertEqual(found[("backupremote_download_bytes_total", frozenset())], size)
        self.assertEqual(found[("backupremote_download_duration_seconds_count", frozenset())], 1)
        self.assertEqual(found[("backupremote_download_resumes_total", frozenset())], 0)
        self.assertEqual(found[("backupremote_downloads_active", frozenset())], 0)
        self.assertEqual(found[("backupremote_deliveries_total", frozenset(
            {("destination", job.receipts[0].destination), ("outcome", "delivered")}))], 1)
        self.assertEqual(found[("backupremote_job_duration_seconds_count",
                                frozenset({("state", "released")}))], 1)
        for step in ("execute", "follow", "download", "verify", "deliver", "release"):
            self.assertEqual(found[("backupremote_job_step_duration_seconds_count",
                                    frozenset({("step", step)}))], 1, step)
        self.assertNotIn(runId, text)

        # the logs: one grep of the runId shows the run on both sides
        clientLines = _lines(clientLog)
        ofRun = [e for e in clientLines if runId in json.dumps(e)]
        clientSide = [e for e in ofRun if e.get("log_namespace", "").startswith(
            "backupremote.client")]
        serverSide = [e for e in _lines(server.config.logFile) if runId in json.dumps(e)
                      and e.get("log_namespace", "").startswith("backupremote.server")]
        self.assertGreaterEqual(len(clientSide), 2, clientLines)
        for event in clientSide:
            for key in ("runId", "scheduleId", "clientId", "requestId"):
                self.assertIn(key, event, event)
            self.assertEqual(event["runId"], runId)
            self.assertEqual(event["clientId"], CLIENT_ID)
        said = {e.get("log_format", "") for e in serverSide}
        self.assertTrue(any("executeBackup" in f for f in said), said)
        self.assertTrue(any("fileTransferStart" in f for f in said), said)
        self.assertTrue(any("releaseArtifact" in f for f in said), said)
        # no secret in any line of either log
        for text in (clientLog.getContent().decode(), server.config.logFile.getContent().decode()):
            self.assertNotIn(server.secret, text)
            self.assertNotIn(server.token, text)


def _lines(path: FilePath) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.getContent().decode().splitlines() if line]
