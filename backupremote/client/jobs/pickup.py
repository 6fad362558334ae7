"""
The daemon takes up jobs other processes record: a C{schedule run-now} of
the CLI, while the daemon runs, records its job and leaves it to the daemon.

Every L{PICKUP_INTERVAL} seconds L{JobPickup} reads the unfinished jobs and
drives each one that nobody drives (not this process, and no other holds
its lock). A job it took up that stopped (its server refused this client)
is tried again only after L{RETRY_AFTER} seconds; the jobs found at the
first pass are left to the daemon's own L{JobRunner.resumeAll}.
"""

from __future__ import annotations


from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from backupremote.client.jobs.locks import JobLocks
from backupremote.client.jobs.runner import JobRunner, logStopped

#: Seconds between two looks for jobs recorded by other processes.
PICKUP_INTERVAL = 2.0
#: Seconds before a job taken up here that stopped is tried again.
RETRY_AFTER = 300.0

_log = Logger(namespace="backupremote.client.jobs")


class JobPickup(Service):
    """Drives the unfinished jobs of the store that no process drives."""

    def __init__(self, runner: JobRunner, clock: IReactorTime, locks: JobLocks | None,
                 interval: float = PICKUP_INTERVAL, retryAfter: float = RETRY_AFTER) -> None:
        self._runner = runner
        self._clock = clock
        self._locks = locks
        self._interval = interval
        self._retryAfter = retryAfter
        #: runId -> when it was last taken up here (or first seen)
        self._tried: dict[str, float] = {}
        self._first = True
        self._loop: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self.look)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True).addErrback(
            lambda failure: _log.failure("the job pickup stopped", failure))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return succeed(None)

    def look(self) -> Deferred[None]:
        """One look at the store; never fails."""
        return Deferred.fromCoroutine(self._look()).addErrback(
            lambda failure: _log.failure("a look for unfinished jobs failed", failure))

    async def _look(self) -> None:
        jobs = await self._runner.jobs.unfinished()
        now = self._clock.seconds()
        if self._first:
            self._first = False
            self._tried = {job.runId: now for job in jobs}  # resumeAll's
            return
        active = set(self._runner.active)
        for job in jobs:
            tried = self._tried.get(job.runId)
            if job.runId in active or (tried is not None and now - tried < self._retryAfter):
                continue
            if self._locks is not None and self._locks.held(job.runId):
                continue
            self._tried[job.runId] = now
            _log.info("run {runId}: taking up the job another command recorded",
                      runId=job.runId, scheduleId=job.scheduleId)
            self._runner.resume(job.runId).addCallbacks(
                lambda ended: _log.info("run {runId}: {state}", runId=ended.runId,
                                        state=ended.state, scheduleId=ended.scheduleId),
                logStopped, errbackArgs=(job.runId,))
