"""
Backup runs over AMP with an in-memory producer: idempotency, queueing,
cancel, events and replay, recovery. Real pipelines are tested elsewhere.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import (
    CreateDatabaseConfig,
    DatabaseConfigInput,
    DeleteDatabaseConfig,
    Finding,
    PreflightReport,
)
from backupremote.protocol.metrics import GetMetrics
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import (
    CancelBackup,
    ExecuteBackup,
    GetExecutionStatus,
    SubscribeRun,
)
from backupremote.server.pipeline import Artifact
from tests.fixtures import ServerHarness


class ControlledProducer:
    """A producer whose every run waits until the test releases it."""

    def __init__(self) -> None:
        self.started: list[tuple[str, Any]] = []
        self.gates: dict[str, Deferred[None]] = {}
        self.progress: dict[str, Any] = {}
        self.cancelled: list[str] = []

    async def __call__(self, reactor: Any, engine: Any, target: Any, options: BackupOptions,
                       tools: Any, runDir: FilePath, baseName: str, progress: Any,
                       sizeEstimate: Any) -> Artifact:
        runId = runDir.basename()
        self.started.append((runId, options))
        self.progress[runId] = progress
        gate: Deferred[None] = Deferred(lambda d: self.cancelled.append(runId))
        self.gates[runId] = gate
        partial = runDir.child("partial")
        partial.setContent(b"half")
        await gate
        data = b"backup of " + baseName.encode()
        artifact = runDir.child(baseName + ".sqlite3.zst")
        artifact.setContent(data)
        partial.remove()
        return Artifact(artifact, artifact.basename(), len(data), "sha256",
                            hashlib.sha256(data).hexdigest(), [])

    def release(self, runId: str) -> None:
        self.gates[runId].callback(None)


class RunCase(SynchronousTestCase):
    """A server with two run slots, two queue places and four SQLite configurations."""

    maxConcurrentRuns = 2
    maxQueuedRuns = 2
    configNames: tuple[str, ...] = ("a", "b", "c", "d")

    def setUp(self) -> None:
        roots = FilePath(self.mktemp())
        roots.makedirs()
        self.producer = ControlledProducer()
        self.harness = ServerHarness(self, produce=self.producer, sqliteRoots=(roots,),
                                     runInThread=self.runInThread,
                                     maxConcurrentRuns=self.maxConcurrentRuns,
                                     maxQueuedRuns=self.maxQueuedRuns,
                                     keepaliveInterval=1e6, authTimeout=1e6)
        self.preflightReport = PreflightReport(ok=True, blockers=[], warnings=[],
                                               sizeEstimate=1000)
        self.patch(self.harness.databases, "preflight", self.fakePreflight)
        self.client = self.harness.connect()
        self.client.auth(self.harness)
        self.configs = []
        for name in self.configNames:
            path = roots.child(f"{name}.sqlite3")
            path.setContent(b"")
            self.configs.append(self.client.call(CreateDatabaseConfig, config=DatabaseConfigInput(
                name=name, engine="sqlite", path=path.path))["config"].id)

    def runInThread(self, function: Any, *args: Any) -> Deferred[Any]:
        """The server's worker threads: here, the calling thread."""
        return succeed(function(*args))

    async def fakePreflight(self, configId: str, options: Any) -> PreflightReport:
        return self.preflightReport

    def execute(self, runId: str, config: int = 0, loopback: Any = None, **kw: Any) -> Any:
        return (loopback or self.client).call(
            ExecuteBackup, runId=runId, databaseConfigId=self.configs[config], **kw)["status"]

    def status(self, runId: str) -> Any:
        return self.client.call(GetExecutionStatus, runId=runId)["status"]


class RunTests(RunCase):
    def test_metrics(self) -> None:
        """getMetrics: what is running now, and counts and timings of what ended."""
        first = self.client.call(GetMetrics)["metrics"]
        self.assertEqual((first.runsRunning, first.runsQueued, first.artifactsStaged),
                         (0, 0, 0))
        self.assertEqual(first.counters.get("auth.succeeded"), 1)
        self.assertEqual(first.timings, {})
        self.execute("run-1", config=0)
        self.execute("run-2", config=1)
        self.execute("run-3", config=2)
        busy = self.client.call(GetMetrics)["metrics"]
        self.assertEqual((busy.runsRunning, busy.runsQueued), (2, 1))
        self.client.call(CancelBackup, runId="run-3")  # still queued
        self.harness.clock.advance(7)
        self.producer.release("run-1")
        self.client.pump.flush()
        after = self.client.call(GetMetrics)["metrics"]
        self.assertEqual((after.runsRunning, after.runsQueued), (1, 0))
        self.assertEqual(after.counters.get("runs.completed"), 1)
        self.assertEqual(after.counters.get("runs.cancelled.CANCELLED"), 1)
        self.assertEqual(after.timings["run"].count, 1)
        self.assertEqual(after.timings["run"].maxSeconds, 7)
        self.assertEqual(sorted(after.timings), ["run", "stage.finalizing"])
        self.assertEqual(after.timings["stage.finalizing"].count, 1)
        self.assertEqual(after.artifactsStaged, 1)
        self.assertGreater(after.stagedBytes, 0)
        self.assertEqual(after.uptimeSeconds - first.uptimeSeconds, 7)
        self.assertEqual(after.startedAt, first.startedAt)

    def test_runCompletesWithEvents(self) -> None:
        status = self.execute("run-1", scheduleId="daily")
        self.assertEqual((status.state, status.scheduleId), ("queued", "daily"))
        self.assertIsNone(status.queuePosition, "it took a free slot")
        self.assertEqual(self.status("run-1").state, "running")
        self.assertEqual(status.options, BackupOptions())
        progress = self.producer.progress["run-1"]
        for done in range(0, 1000, 100):
            progress("dump", done, 1000)
            self.harness.clock.advance(0.1)
        progress("verification", 50, 60)
        self.producer.release("run-1")
        self.client.pump.flush()
        final = self.status("run-1")
        self.assertEqual(final.state, "completed")
        self.assertEqual(final.artifact.checksum, "sha256")
        self.assertIsNone(final.errorCode)
        events = self.client.client.events
        self.assertEqual([e.seq for e in events], list(range(1, len(events) + 1)))
        self.assertEqual(events[-1].kind, "complete")
        dumps = [e for e in events if e.stage == "dump"]
        self.assertLess(len(dumps), 10)  # throttled
        self.assertEqual(dumps[-1].bytes, 900)  # but the last of the stage is sent
        self.assertEqual(final.lastSeq, events[-1].seq)
        folder = self.harness.staging.runFolder("run-1")
        self.assertEqual(sorted(c.basename() for c in folder.children()),
                         [final.artifact.name, "chunks.sha256", "manifest.json"])  # + manifest
        self.assertEqual(os.stat(folder.path).st_mode & 0o777, 0o700)

    def test_duplicateRunIdReturnsTheRun(self) -> None:
        first = self.execute("same")
        again = self.execute("same")
        self.assertTrue(again.duplicate)
        self.assertEqual(again.runId, first.runId)
        self.assertEqual(len(self.producer.started), 1)
        conflict = self.client.error(ExecuteBackup, runId="same",
                                     databaseConfigId=self.configs[0],
                                     options=BackupOptions(compression="xz"))
        self.assertEqual(conflict.code, errors.CONFLICT)
        other = self.client.error(ExecuteBackup, runId="same", databaseConfigId=self.configs[1])
        self.assertEqual(other.code, errors.CONFLICT)

    def test_racingDuplicatesStartOneRun(self) -> None:
        """Two connections send the same runId while preflight is still running."""
        gate: Deferred[PreflightReport] = Deferred()
        self.patch(self.harness.databases, "preflight", lambda *a: gate)
        second = self.harness.connect(port=2)
        second.auth(self.harness)
        answers: list[Any] = []
        for loopback in (self.client, second):
            loopback.client.callRemote(ExecuteBackup, runId="race",
                                       databaseConfigId=self.configs[0]).addBoth(answers.append)
            loopback.pump.flush()
        self.assertEqual(answers, [])
        gate.callback(self.preflightReport)
        self.client.pump.flush()
        second.pump.flush()
        statuses = [answer["status"] for answer in answers]
        self.assertEqual(sorted(s.duplicate for s in statuses), [False, True])
        self.assertEqual(len(self.producer.started), 1)

    def test_queueAndOneRunPerDatabase(self) -> None:
        self.execute("r1", config=0)
        second = self.execute("r2", config=0)
        self.assertEqual((second.state, second.queuePosition), ("queued", 1))
        self.execute("r3", config=1)
        fourth = self.execute("r4", config=2)
        self.assertEqual(fourth.queuePosition, 2)
        full = self.client.error(ExecuteBackup, runId="r5", databaseConfigId=self.configs[3])
        self.assertEqual(full.code, errors.CAPACITY_EXCEEDED)
        self.assertEqual([r for r, _ in self.producer.started], ["r1", "r3"])
        self.producer.release("r1")
        self.client.pump.flush()
        self.assertEqual([r for r, _ in self.producer.started], ["r1", "r3", "r2"])
        self.assertEqual(self.status("r4").queuePosition, 1)

    def test_cancelRunning(self) -> None:
        self.execute("c1")
        folder = self.harness.staging.runFolder("c1")
        self.assertTrue(folder.child("partial").exists())
        status = self.client.call(CancelBackup, runId="c1")["status"]
        self.assertEqual(status.state, "cancelled")
        self.assertEqual(self.producer.cancelled, ["c1"])
        self.assertFalse(folder.exists())
        final = self.status("c1")
        self.assertEqual((final.state, final.errorCode), ("cancelled", errors.CANCELLED))
        self.assertEqual(self.client.client.events[-1].errorCode, errors.CANCELLED)
        again = self.client.error(CancelBackup, runId="c1")
        self.assertEqual(again.code, errors.CONFLICT)
        self.assertEqual(again.details, {"state": "cancelled"})
        self.assertIn("already ended (cancelled)", again.message)

    def test_cancelQueued(self) -> None:
        self.execute("q1")
        self.execute("q2")
        self.client.call(CancelBackup, runId="q2")
        self.assertEqual(self.status("q2").state, "cancelled")
        self.producer.release("q1")
        self.client.pump.flush()
        self.assertEqual([r for r, _ in self.producer.started], ["q1"])

    def test_preflightBlockerRefusesTheRun(self) -> None:
        self.preflightReport = PreflightReport(
            ok=False, blockers=[Finding(errors.COMPRESSION_UNAVAILABLE, "no xz")], warnings=[])
        error = self.client.error(ExecuteBackup, runId="p1", databaseConfigId=self.configs[0])
        self.assertEqual(error.code, errors.COMPRESSION_UNAVAILABLE)
        self.assertEqual(self.producer.started, [])
        self.assertEqual(self.client.error(GetExecutionStatus, runId="p1").code, errors.NOT_FOUND)

    def test_otherClientsCannotSeeRuns(self) -> None:
        self.execute("mine")
        self.harness.store.addClient("bob", __import__(
            "backupremote.server.state.secrethash", fromlist=["x"]).hashSecret("bobsecret"))
        bob = self.harness.connect(port=3)
        bob.auth(self.harness, clientId="bob", secret="bobsecret",
                 license=self.harness.license(clientId="bob"))
        for command in (GetExecutionStatus, CancelBackup, SubscribeRun):
            self.assertEqual(bob.error(command, runId="mine").code, errors.NOT_FOUND)

    def test_subscribeReplaysAfterSeq(self) -> None:
        self.execute("s1")
        progress = self.producer.progress["s1"]
        for done in (10, 20, 30):
            progress("dump", done, 100)
            self.harness.clock.advance(1)
        late = self.harness.connect(port=4)
        late.auth(self.harness)
        late.call(SubscribeRun, runId="s1", afterSeq=2)
        self.assertEqual([e.seq for e in late.client.events], [3, 4])
        self.producer.release("s1")
        late.pump.flush()
        self.assertEqual(late.client.events[-1].kind, "complete")

    def test_deleteConfigDuringRun(self) -> None:
        self.execute("d1")
        self.assertEqual(self.client.error(DeleteDatabaseConfig, id=self.configs[0]).code,
                         errors.CONFLICT)
        self.producer.release("d1")
        self.client.pump.flush()
        self.client.call(DeleteDatabaseConfig, id=self.configs[0])

    def test_configBusyFromAdmissionToEnd(self) -> None:
        """
        The run queue keeps BusyConfigs: a configuration is busy while a run
        of it is queued or executing, and free once the last one ends.
        """
        busy = self.harness.busyConfigs
        self.execute("b1", config=0)
        self.assertEqual(self.execute("b2", config=0).state, "queued")
        self.execute("b3", config=1)
        self.assertEqual([busy.isBusy(c) for c in self.configs], [True, True, False, False])
        self.client.call(CancelBackup, runId="b3")
        self.assertFalse(busy.isBusy(self.configs[1]))
        self.producer.release("b1")
        self.client.pump.flush()
        self.assertEqual([r for r, _ in self.producer.started], ["b1", "b3", "b2"])
        self.assertTrue(busy.isBusy(self.configs[0]), "b2 executes now")
        self.producer.release("b2")
        self.client.pump.flush()
        self.assertFalse(busy.isBusy(self.configs[0]))
        self.client.call(DeleteDatabaseConfig, id=self.configs[0])

    def test_optionsValidated(self) -> None:
        error = self.client.error(ExecuteBackup, runId="v1", databaseConfigId=self.configs[0],
                                  options=BackupOptions(compression="zstd", level=40))
        self.assertEqual(error.code, errors.VALIDATION_FAILED)
        self.assertIn("level", error.details["fields"])
        bad = self.client.error(ExecuteBackup, runId="bad id!", databaseConfigId=self.configs[0])
        self.assertEqual(bad.code, errors.VALIDATION_FAILED)
        script = self.client.error(ExecuteBackup, runId="v2", databaseConfigId=self.configs[0],
                                   options=BackupOptions(postScript="notify"))
        self.assertEqual(script.code, errors.SCRIPT_NOT_ALLOWED)

    def test_recoveryAfterCrash(self) -> None:
        """A restarted server marks unfinished runs INTERRUPTED and removes their files."""
        self.execute("crash")
        self.execute("waiting")
        self.assertTrue(self.harness.staging.runFolder("crash").child("partial").exists())
        stray = self.harness.staging.runFolder("unknown")
        stray.makedirs()
        # the old process dies without a word: its manager forgets everything
        dead = self.harness.runs
        dead.queue._stopping = True
        dead.queue.active.clear()
        dead.queue._waiting.clear()
        from backupremote.server.runs.manager import RunManager
        from backupremote.server.runs.store import RunStore
        manager = RunManager(self.harness.clock, RunStore(self.harness.store.connection),
                             self.harness.databases, self.producer, self.harness.scripts,
                             self.harness.staging, self.harness.databases.engines,
                             self.harness.databases.busy)
        self.assertEqual(sorted(manager.recover()), ["crash", "waiting"])
        for runId in ("crash", "waiting"):
            status = manager.status("alice", runId)
            self.assertEqual((status.state, status.errorCode), ("failed", errors.INTERRUPTED))
        self.assertFalse(self.harness.staging.runFolder("crash").exists())
        self.assertFalse(stray.exists())



class PostScriptTests(SynchronousTestCase):
    """Post-scripts come only from the allowlist folder; a failure keeps the artifact."""

    def setUp(self) -> None:
        import stat
        roots = FilePath(self.mktemp())
        roots.makedirs()
        scripts = FilePath(self.mktemp())
        scripts.makedirs()
        self.output = FilePath(self.mktemp())
        for name, body in [("notify", f'echo "ran $BACKUPREMOTE_RUN_ID $BACKUPREMOTE_ARTIFACT_NAME"'
                                      f' > {self.output.path}; echo done'),
                           ("broken", "echo something went wrong >&2; exit 3")]:
            script = scripts.child(name)
            script.setContent(f"#!/bin/sh\n{body}\n".encode())
            script.chmod(stat.S_IRWXU)
        outside = FilePath(self.mktemp())
        outside.setContent(b"#!/bin/sh\ntrue\n")
        outside.chmod(0o755)
        import os as _os
        _os.symlink(outside.path, scripts.child("escape").path)
        self.producer = ControlledProducer()
        self.harness = ServerHarness(self, produce=self.producer, sqliteRoots=(roots,),
                                     postScriptsDir=scripts, keepaliveInterval=1e6,
                                     authTimeout=1e6)
        self.patch(self.harness.databases, "preflight", self.fakePreflight)
        self.client = self.harness.connect()
        self.client.auth(self.harness)
        path = roots.child("a.sqlite3")
        path.setContent(b"")
        self.configId = self.client.call(CreateDatabaseConfig, config=DatabaseConfigInput(
            name="a", engine="sqlite", path=path.path))["config"].id

    async def fakePreflight(self, configId: str, options: Any) -> PreflightReport:
        return PreflightReport(ok=True, blockers=[], warnings=[])

    def test_onlyAllowlistedScripts(self) -> None:
        for name in ("escape", "../notify", "/bin/sh", "missing"):
            error = self.client.error(ExecuteBackup, runId="x", databaseConfigId=self.configId,
                                      options=BackupOptions(postScript=name))
            self.assertIn(error.code, (errors.SCRIPT_NOT_ALLOWED, errors.VALIDATION_FAILED), name)
        self.assertEqual(self.producer.started, [])
