"""
A run's pipeline starts after its admission is answered: C{executeBackup}
answers once the run is recorded, and the work of starting it (run folder,
children) waits two reactor turns, so that the answers of runs admitted
together are not held behind each other's pipelines.

The connections here are pumped without advancing the clock
(L{answerNow}): time stands still between the answer and the start.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from backupremote.protocol import errors
from backupremote.protocol.databases import PreflightReport
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.runs import CancelBackup, ExecuteBackup
from backupremote.server.runs.store import RunStore
from tests.server.test_runs import RunCase


def answerNow(loopback: Any, command: Any, **arguments: Any) -> Any:
    """What C{command} answers (a result or a L{Failure}), with no time passing."""
    outcome: list[Any] = []
    loopback.client.callRemote(command, **arguments).addBoth(outcome.append)
    loopback.pump.flush(advanceClock=False)
    assert outcome, "no answer arrived"
    return outcome[0]


class StartAfterAnswerTests(RunCase):
    def executeNow(self, runId: str, config: int = 0) -> Any:
        answer = answerNow(self.client, ExecuteBackup, runId=runId,
                           databaseConfigId=self.configs[config])
        if isinstance(answer, Failure):
            answer.raiseException()
        return answer["status"]

    def recorded(self, runId: str) -> Any:
        return RunStore(self.harness.store.connection).get(runId)

    def oneTurn(self) -> None:
        """The timed calls due now, and not those they schedule: one reactor turn."""
        for call in [c for c in self.harness.clock.getDelayedCalls()
                     if c.getTime() <= self.harness.clock.seconds()]:
            self.harness.clock.calls.remove(call)
            call.func(*call.args, **call.kw)

    def test_answeredBeforeThePipelineStarts(self) -> None:
        """The answer says queued, the record is on disk, and no pipeline has started."""
        status = self.executeNow("a1")
        self.assertEqual((status.state, status.queuePosition, status.duplicate),
                         ("queued", None, False))
        self.assertEqual(self.recorded("a1").state, "queued")
        self.assertEqual(self.producer.started, [])
        self.assertFalse(self.harness.staging.runFolder("a1").exists())
        self.assertEqual(self.harness.runs.runningCount, 1, "it holds its slot already")
        self.oneTurn()
        self.assertEqual(self.producer.started, [], "the answer leaves in the next turn's I/O")
        self.harness.clock.advance(0)
        self.assertEqual([r for r, _ in self.producer.started], ["a1"])
        self.assertEqual(self.recorded("a1").state, "running")
        self.client.pump.flush()
        self.assertEqual(self.client.client.events[0].stage, "starting")

    def test_cancelBetweenAnswerAndStart(self) -> None:
        """A run cancelled before its pipeline started never starts and frees its slot."""
        self.executeNow("c1", config=0)
        self.executeNow("c2", config=1)
        self.executeNow("c3", config=2)
        answer = answerNow(self.client, CancelBackup, runId="c1")["status"]
        self.assertEqual((answer.state, answer.errorCode, answer.errorMessage),
                         ("cancelled", errors.CANCELLED, "cancelled before it started"))
        self.assertFalse(self.harness.busyConfigs.isBusy(self.configs[0]))
        self.harness.clock.advance(0)
        self.assertEqual(sorted(r for r, _ in self.producer.started), ["c2", "c3"])
        self.assertFalse(self.harness.staging.runFolder("c1").exists())
        self.assertEqual(self.recorded("c1").state, "cancelled")
        failed = [e for e in self.client.client.events if e.runId == "c1"]
        self.assertEqual([(e.kind, e.errorCode) for e in failed], [("failed", errors.CANCELLED)])

    def test_retryBetweenAnswerAndStart(self) -> None:
        """The same runId sent again before the start is the same run: one pipeline."""
        first = self.executeNow("r1")
        again = self.executeNow("r1")
        self.assertEqual((again.runId, again.duplicate, again.state), ("r1", True, "queued"))
        self.assertEqual(again.createdAt, first.createdAt)
        self.harness.clock.advance(0)
        self.assertEqual(self.executeNow("r1").state, "running")
        self.assertEqual([r for r, _ in self.producer.started], ["r1"])

    def test_limitsCountTheRunsAboutToStart(self) -> None:
        """Slots, the queue and the busy rule hold while no pipeline has started yet."""
        first = self.executeNow("l1", config=0)
        sameDatabase = self.executeNow("l2", config=0)
        self.executeNow("l3", config=1)
        fourth = self.executeNow("l4", config=2)
        self.assertEqual([first.queuePosition, sameDatabase.queuePosition,
                          fourth.queuePosition], [None, 1, 2])
        full = answerNow(self.client, ExecuteBackup, runId="l5",
                         databaseConfigId=self.configs[3])
        refusal = BackupRemoteError.fromDescription(full.value.errorCode, full.value.description)
        self.assertEqual(refusal.code, errors.CAPACITY_EXCEEDED)
        self.assertEqual(self.producer.started, [])
        self.harness.clock.advance(0)
        self.assertEqual([r for r, _ in self.producer.started], ["l1", "l3"])

    def test_stopBetweenAnswerAndStart(self) -> None:
        """A server stopping before the start ends the run INTERRUPTED; it never starts."""
        self.executeNow("s1")
        self.harness.runs.stop()
        self.harness.clock.advance(0)
        self.assertEqual(self.producer.started, [])
        self.assertEqual((self.recorded("s1").state, self.recorded("s1").errorCode),
                         ("failed", errors.INTERRUPTED))

    def test_restartRecoversARunThatNeverStarted(self) -> None:
        """A recorded run whose pipeline never started is INTERRUPTED by the next start."""
        self.executeNow("x1")
        # the old process dies before the start: its manager forgets everything
        dead = self.harness.runs.queue
        dead._stopping = True
        dead.active.clear()
        dead._starting.clear()
        from backupremote.server.runs.manager import RunManager
        manager = RunManager(self.harness.clock, RunStore(self.harness.store.connection),
                             self.harness.databases, self.producer, self.harness.scripts,
                             self.harness.staging, self.harness.databases.engines,
                             self.harness.databases.busy)
        self.assertEqual(manager.recover(), ["x1"])
        self.assertEqual(self.recorded("x1").errorCode, errors.INTERRUPTED)


class ConcurrentAdmissionsTests(RunCase):
    maxConcurrentRuns = 10
    maxQueuedRuns = 16
    configNames = tuple(f"db{n}" for n in range(10))

    def test_tenAdmissionsAnsweredBeforeAnyStart(self) -> None:
        """
        Ten runs whose preflights end in one turn (as when they share one
        tool-version child) are all answered before the first pipeline starts.
        """
        gates: list[Deferred[PreflightReport]] = []

        async def waitingPreflight(configId: str, options: Any) -> PreflightReport:
            gate: Deferred[PreflightReport] = Deferred()
            gates.append(gate)
            return await gate

        self.patch(self.harness.databases, "preflight", waitingPreflight)
        answers: list[Any] = []
        for n in range(10):
            self.client.client.callRemote(
                ExecuteBackup, runId=f"t{n}", databaseConfigId=self.configs[n]
            ).addCallback(lambda answer: answers.append(
                (answer["status"].runId, answer["status"].state, len(self.producer.started))))
        self.client.pump.flush(advanceClock=False)
        self.assertEqual((answers, len(gates)), ([], 10))
        for gate in gates:
            gate.callback(self.preflightReport)
        self.client.pump.flush(advanceClock=False)
        self.assertEqual(answers, [(f"t{n}", "queued", 0) for n in range(10)])
        self.harness.clock.advance(0)
        self.assertEqual(sorted(r for r, _ in self.producer.started),
                         sorted(f"t{n}" for n in range(10)))
        self.assertEqual(self.harness.runs.runningCount, 10)




class RecordOnDiskTests(RunCase):
    """
    The answer waits for the run's record to reach the disk (an fsync of the
    WAL file in a worker thread, held here), while the run already counts.
    """

    def setUp(self) -> None:
        self.fsyncs: list[Deferred[None]] = []
        super().setUp()

    def runInThread(self, function: Any, *args: Any) -> Deferred[Any]:
        if function is os.fsync:
            held: Deferred[None] = Deferred()
            self.fsyncs.append(held)
            return held
        return super().runInThread(function, *args)

    def send(self, runId: str, config: int = 0) -> list[Any]:
        answers: list[Any] = []
        self.client.client.callRemote(ExecuteBackup, runId=runId,
                                      databaseConfigId=self.configs[config]
                                      ).addBoth(answers.append)
        self.client.pump.flush(advanceClock=False)
        return answers

    def test_answeredOnceTheRecordIsOnDisk(self) -> None:
        answers = self.send("d1")
        self.assertEqual((answers, len(self.fsyncs)), ([], 1))
        self.assertEqual(self.recorded("d1").state, "queued", "committed, visible")
        self.assertEqual(self.harness.runs.runningCount, 1, "it holds its slot already")
        self.fsyncs[0].callback(None)
        self.client.pump.flush(advanceClock=False)
        self.assertEqual([a["status"].state for a in answers], ["queued"])

    def test_retryWhileTheRecordIsWrittenIsTheSameRun(self) -> None:
        first = self.send("d2")
        again = self.send("d2")
        self.assertEqual((first, again, len(self.fsyncs)), ([], [], 1))
        self.fsyncs[0].callback(None)
        self.client.pump.flush()
        self.assertEqual([first[0]["status"].duplicate, again[0]["status"].duplicate],
                         [False, True])
        self.assertEqual([r for r, _ in self.producer.started], ["d2"])

    def test_failedWaitLeavesTheRunAdmitted(self) -> None:
        """If the disk wait fails the answer is INTERNAL_ERROR; a retry answers the run."""
        answers = self.send("d3")
        self.fsyncs[0].errback(OSError(5, "Input/output error"))
        self.client.pump.flush(advanceClock=False)
        error = BackupRemoteError.fromDescription(answers[0].value.errorCode,
                                                  answers[0].value.description)
        self.assertEqual(error.code, errors.INTERNAL_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        retry = self.executeNow("d3")
        self.assertEqual((retry.runId, retry.duplicate), ("d3", True))

    def recorded(self, runId: str) -> Any:
        return RunStore(self.harness.store.connection).get(runId)

    def executeNow(self, runId: str) -> Any:
        return StartAfterAnswerTests.executeNow(self, runId)  # type: ignore[arg-type]
    def test_pipelineStartsAfterTheRecordIsOnDisk(self) -> None:
        """However long the disk takes, the pipeline starts after the answer, two turns on."""
        answers = self.send("d4")
        self.harness.clock.advance(0)
        self.assertEqual((answers, self.producer.started), ([], []))
        self.fsyncs[0].callback(None)
        self.client.pump.flush(advanceClock=False)
        self.assertEqual([a["status"].state for a in answers], ["queued"])
        self.assertEqual(self.producer.started, [])
        self.harness.clock.advance(0)
        self.assertEqual([r for r, _ in self.producer.started], ["d4"])

    def test_cancelWhileTheRecordIsWritten(self) -> None:
        answers = self.send("d5")
        self.client.call(CancelBackup, runId="d5")
        self.fsyncs[0].callback(None)
        self.client.pump.flush()
        self.assertEqual(answers[0]["status"].state, "cancelled")
        self.assertEqual(self.producer.started, [])
        self.assertEqual(self.harness.runs.runningCount, 0)
