"""
Jobs: the one persisted runner of a run, from command to destinations.

    execute -> follow -> download -> verify -> deliver -> release

The CLI (``run``, ``download``, ``demo``), the daemon and the scheduler all
drive runs through a L{JobRunner}; nothing of a run's lifecycle lives
anywhere else. Every step is recorded in the client's store in one
transaction, so a client killed at any instant takes each job up again at
the step it had not recorded (see L{backupremote.client.jobs.runner}).

The public entry points:

    runner = JobRunner(reactor, JobStore(store, now(reactor)), oneServer(client),
                       LocalFolderDelivery(reactor), workFolder, JobLocks(locksFolder),
                       retry=lambda: Backoff(reactor, maxFailures=None, jitter=1.0))
    job = await runner.start(JobRequest(
        runId=slotRunId(schedule, fireTime), databaseConfigId=schedule.database,
        options=schedule.options, scheduleId=schedule.id, fireTime=fireTime,
        destinations=(LocalFolder("/backups"),)))
    job = await runner.submit(request)       # the scheduler: fires once recorded
    busy = await runner.busySchedules()      # the schedules with a job that has steps left
    jobs = await runner.resumeAll()          # at start: every unfinished job
    await runner.stop()                      # at stop: they wait where they are

(C{jobRunnerIn(reactor, dataDir, store, servers, retry)} builds the runner
of a client's data folder as the daemon and the CLI do.)

L{JobRunner.start} fires with the L{Job} as it ended (C{job.state}: its
goal, C{failed} or C{cancelled}, with C{job.failedStep}, C{errorCode} and
C{errorMessage}), or fails with a L{BackupRemoteError} if it had to stop on
the way (server unreachable, the run driven by another process): the job is
kept and continues at the next start or resume. The same runId asked for
again continues the same job (and a failed step of this client's is tried
again). The daemon builds its runner in L{backupremote.client.service}.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backupremote.client.jobs.delivery import IDelivery, LocalFolderDelivery
    from backupremote.client.jobs.locks import JobLocks
    from backupremote.client.jobs.model import (
        CANCELLED,
        FAILED,
        GOALS,
        STATES,
        Job,
        JobRequest,
        LocalFolder,
        Receipt,
    )
    from backupremote.client.jobs.runner import (
        JobObserver,
        JobRunner,
        daemonRetry,
        jobRunnerIn,
        oneServer,
    )
    from backupremote.client.jobs.store import JobMoved, JobStore, now

#: name -> its module, imported on first use: a command that reads the
#: client's store (C{db list}'s last backups, C{runs list}) needs no runner
_EXPORTS = {
    "IDelivery": "backupremote.client.jobs.delivery",
    "LocalFolderDelivery": "backupremote.client.jobs.delivery",
    "JobLocks": "backupremote.client.jobs.locks",
    "CANCELLED": "backupremote.client.jobs.model",
    "FAILED": "backupremote.client.jobs.model",
    "GOALS": "backupremote.client.jobs.model",
    "STATES": "backupremote.client.jobs.model",
    "Job": "backupremote.client.jobs.model",
    "JobRequest": "backupremote.client.jobs.model",
    "LocalFolder": "backupremote.client.jobs.model",
    "Receipt": "backupremote.client.jobs.model",
    "JobObserver": "backupremote.client.jobs.runner",
    "JobRunner": "backupremote.client.jobs.runner",
    "daemonRetry": "backupremote.client.jobs.runner",
    "jobRunnerIn": "backupremote.client.jobs.runner",
    "now": "backupremote.client.jobs.store",
    "oneServer": "backupremote.client.jobs.runner",
    "JobMoved": "backupremote.client.jobs.store",
    "JobStore": "backupremote.client.jobs.store",
}

__all__ = [
    "CANCELLED", "FAILED", "GOALS", "STATES",
    "IDelivery", "Job", "JobLocks", "JobMoved", "JobObserver", "JobRequest", "JobRunner",
    "JobStore", "LocalFolder", "LocalFolderDelivery", "Receipt", "daemonRetry", "jobRunnerIn",
    "now", "oneServer",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
