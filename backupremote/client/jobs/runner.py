"""
The job runner: drives each job through its steps, one transaction each.

    execute -> follow -> download -> verify -> deliver -> release
    pending   running   completed   downloaded  verified  delivered  released

A step is read from the job's stored state, done, and recorded with the
state it reached, in one transaction (L{JobStore.advance}); so after a
crash (C{kill -9} included) the job is taken up again at the step that was
not recorded: a run still executing is followed again (the server replays
its events), a completed one downloaded (resuming the C{.part}), a
downloaded one verified and delivered (a destination that already holds
the file is not written twice), a delivered one released.

How a step ends:
  - it succeeds: the next state is recorded;
  - the run ended badly on the server (failed, cancelled) or the step met a
    refusal another try cannot mend: the job is recorded C{failed} (or
    C{cancelled}) with the step, code and message. A failure of a step of
    this client's (download, verify, deliver, release) is tried again from
    that step when the job is started again;
  - the server cannot be reached or refuses this client (connection,
    timeout, capacity, auth, licence, TLS): the job stays where it is. With
    a C{retry} policy (the daemon) the step is tried again after a backoff
    with jitter; without (a CLI command) the error is raised, and the job
    continues when it is started again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from backupremote.client.api import BackupRemoteClient
from backupremote.client.backoff import TRANSIENT, Backoff
from backupremote.client.connection import PERMANENT
from backupremote.client.download import DownloadProgress, fileSha256
from backupremote.client.jobs.delivery import DeliveryFailed, DeliveryWhenNeeded, IDelivery
from backupremote.client.jobs.locks import JobLocks
from backupremote.client.jobs.model import (
    CANCELLED,
    FAILED,
    GOALS,
    RETRYABLE,
    Job,
    JobRequest,
    UploadProgress,
    reached,
)
from backupremote.client.jobs.store import JobMoved, JobStore
from backupremote.client.jobs.store import now as now  # it lived here: importers keep working
from backupremote.logcontext import bindLogContext, logContext, runRequestId
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    CONFLICT,
    INTERNAL_ERROR,
    NOT_FOUND,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.runs import RunEvent
from backupremote.reactors import IDestinationReactor, inThreadPool

if TYPE_CHECKING:  # the notifier itself is the daemon's (twisted.application)
    from backupremote.client.notify.notifier import EventSink

_log = Logger(namespace="backupremote.client.jobs")

#: Errors that say nothing about the job itself: it waits where it is.
NOT_THE_JOBS_FAULT = TRANSIENT | PERMANENT


class JobObserver:
    """What a job's driver tells whoever watches it (the CLI's output); all optional."""

    def runEvent(self, event: RunEvent) -> None:
        """An event of the run on the server (replayed from the start when followed again)."""

    def downloadProgress(self, progress: DownloadProgress) -> None:
        """How far the download is."""

    def uploadProgress(self, progress: UploadProgress) -> None:
        """How far the upload to one of the run's named destinations is."""

    def stepDone(self, job: Job) -> None:
        """A step was recorded: C{job} is in its new state."""


Servers = Callable[[str], BackupRemoteClient]


def oneServer(client: BackupRemoteClient) -> Servers:
    """The servers of a client with one: C{default}."""

    def server(name: str) -> BackupRemoteClient:
        if name != "default":
            raise BackupRemoteError(CONFIG_INVALID, f"client.toml names no server {name!r}")
        return client

    return server


class JobRunner:
    """
    Drives jobs: L{start} one, L{resumeAll} after a restart, L{stop} them.

    @param servers: the library client of each server, by name.
    @param workFolder: where artifacts are downloaded when the request
        names no folder (one sub-folder per run, emptied once delivered).
    @param locks: one driver per job across processes (C{None}: this
        process only, as in tests).
    @param retry: makes the backoff of a job whose server is unreachable
        (C{None}: raise at once).
    @param notify: told how each job it drives ends (failed, or delivered):
        the daemon's L{backupremote.client.notify.Notifier.notify}.
    """

    def __init__(self, clock: IReactorTime, jobs: JobStore, servers: Servers,
                 delivery: IDelivery, workFolder: FilePath, locks: JobLocks | None = None,
                 retry: Callable[[], Backoff] | None = None,
                 runInThread: Callable[..., Deferred[Any]] | None = None,
                 downloadOptions: dict[str, Any] | None = None,
                 notify: EventSink | None = None) -> None:
        self._clock = clock
        self._notify = notify
        self.jobs = jobs
        self._servers = servers
        self._delivery = delivery
        self.workFolder = workFolder
        self._locks = locks
        self._retry = retry
        self._runInThread = runInThread or (
            inThreadPool(clock))
        self._downloadOptions = downloadOptions or {}
        #: runId -> (device, inode, size) of the file its download step has just written and
        #: checked whole against the manifest's SHA-256, for the verify step of the same drive
        self._justDownloaded: dict[str, tuple[int, int, int]] = {}
        #: the runIds being driven now, and every drive's Deferred (to cancel them)
        self._busy: set[str] = set()
        self._drives: set[Deferred[Job]] = set()
        self._idleWaiters: dict[str, list[Deferred[None]]] = {}
        self._stopped = False
        #: called with the runId of each job as its drive starts, whoever
        #: started it; each returns one more observer of that drive (the
        #: dashboard's live view, L{backupremote.client.web})
        self.watchers: list[Callable[[str], JobObserver]] = []

    # The public entry points

    def start(self, request: JobRequest, observer: JobObserver | None = None) -> Deferred[Job]:
        """
        Record the job of C{request} (or continue the one its runId has)
        and drive it to its goal; fires with the job as it ends (its
        C{state} says how), or fails with a L{BackupRemoteError} when it had
        to stop on the way (it is kept, and continues at the next start).
        """
        return self._driving(request.runId, self._start(request, observer or JobObserver()))

    def submit(self, request: JobRequest) -> Deferred[Job]:
        """
        L{start} the job, for callers that do not wait for its end (the
        scheduler): fires with the job once it is recorded, while its drive
        goes on (its end, or why it stopped, is logged).
        """
        recorded: Deferred[Job] = Deferred()
        drive = self._driving(request.runId, self._start(request, JobObserver(), recorded))

        def ended(result: Any) -> None:
            if not recorded.called:
                recorded.errback(result) if isinstance(result, Failure) else recorded.callback(
                    result)
            elif isinstance(result, Failure):
                logStopped(result, request.runId)
            else:
                _logEnd(result)

        drive.addBoth(ended)
        return recorded

    def busySchedules(self) -> Deferred[set[str]]:
        """The schedules that have a job recorded with steps left (one query for them all)."""
        busy: Deferred[set[str]] = self.jobs.busySchedules()
        return busy

    def resume(self, runId: str, observer: JobObserver | None = None) -> Deferred[Job]:
        """Drive the stored job C{runId} on from where it is."""
        return self._driving(runId, self._resume(runId, observer or JobObserver()))

    def resumeAll(self) -> Deferred[list[Job]]:
        """
        Drive every unfinished job on (the daemon does it at start); fires
        once they have all ended or stopped, with the jobs that ended. A
        job another process drives is left to it; errors are logged.
        """

        async def resumeAll() -> list[Job]:
            jobs = await self.jobs.unfinished()
            if jobs:
                _log.info("taking up {count} unfinished job(s)", count=len(jobs))
            drives = [self.resume(job.runId).addCallback(_logEnd).addErrback(
                logStopped, job.runId) for job in jobs]
            results = await DeferredList(drives, consumeErrors=True)
            return [job for ok, job in results if ok and job is not None]

        return Deferred.fromCoroutine(resumeAll())

    def stop(self) -> Deferred[None]:
        """Stop driving (the jobs stay where they are, to be resumed)."""
        self._stopped = True
        for drive in list(self._drives):
            drive.cancel()
        return self._delivery.stop()

    @property
    def active(self) -> list[str]:
        """The runIds being driven now."""
        return sorted(self._busy)

    # Bookkeeping of drives

    def _driving(self, runId: str, work: Any) -> Deferred[Job]:
        drive = Deferred.fromCoroutine(work)
        if not drive.called:
            self._drives.add(drive)
            drive.addBoth(lambda result: (self._drives.discard(drive), result)[1])
        return drive

    async def _idle(self, runId: str) -> None:
        """Wait until this process drives C{runId} no more."""
        while runId in self._busy:
            waiter: Deferred[None] = Deferred()
            self._idleWaiters.setdefault(runId, []).append(waiter)
            await waiter

    async def _exclusively(self, runId: str, work: Callable[[], Any]) -> Job:
        if self._stopped:
            raise BackupRemoteError(INTERNAL_ERROR, "the job runner is stopped")
        await self._idle(runId)
        bindLogContext(runId=runId, requestId=runRequestId(runId))
        release = self._locks.acquire(runId) if self._locks is not None else None
        self._busy.add(runId)
        try:
            return await work()
        finally:
            self._busy.discard(runId)
            if release is not None:
                release()
            for waiter in self._idleWaiters.pop(runId, []):
                waiter.callback(None)

    # Starting and resuming

    async def _start(self, request: JobRequest, observer: JobObserver,
                     recorded: Deferred[Job] | None = None) -> Job:
        async def work() -> Job:
            if request.databaseConfigId is None and await self.jobs.get(request.runId) is None:
                # a run started elsewhere: it must be one of this client's
                await self._client(request.server).getExecutionStatus(request.runId)
            job, created = await self.jobs.create(request, self.workFolder.path)
            if not created:
                job = await self._merge(job, request)
            # The drive runs up to its first wait now: a new job's command is
            # on its way before the line below and the submitter's own work
            # (the scheduler's, for each of 200 jobs one commit recorded).
            drive = Deferred.fromCoroutine(self._drive(job, observer))
            if created:
                _log.info("run {runId}: job recorded (goal {goal})", runId=job.runId,
                          goal=job.goal, scheduleId=job.scheduleId)
            if recorded is not None:
                recorded.callback(job)
            return await drive

        return await self._exclusively(request.runId, work)

    async def _resume(self, runId: str, observer: JobObserver) -> Job:
        async def work() -> Job:
            job = await self.jobs.get(runId)
            if job is None:
                raise BackupRemoteError(NOT_FOUND, f"this client has no job for run {runId}")
            return await self._drive(job, observer)

        return await self._exclusively(runId, work)

    async def _merge(self, job: Job, request: JobRequest) -> Job:
        """The same runId asked for again: go on, perhaps further, or try a failed step again."""
        state = job.state
        changes: dict[str, Any] = {}
        if state in (FAILED, CANCELLED):
            if job.failedStep not in RETRYABLE:
                return job  # the run itself ended so on the server: nothing to try again
            state = RETRYABLE[job.failedStep]
            changes |= {"failedStep": None, "errorCode": None, "errorMessage": None}
        goal = max(job.goal, request.goal, key=GOALS.index)
        if goal != job.goal:
            changes["goal"] = goal
        folder = request.downloadFolder
        if folder is not None and folder != job.downloadFolder:
            if job.keepDownload or reached(state, "downloaded"):
                raise BackupRemoteError(CONFLICT, (
                    f"run {job.runId} is downloaded into {job.downloadFolder}; ask for that "
                    "folder (or download it under another run)"))
            changes |= {"downloadFolder": folder, "keepDownload": True}
        added = tuple(d for d in request.destinations if d not in job.destinations)
        if added:
            if reached(state, "delivered"):
                raise BackupRemoteError(CONFLICT, (
                    f"run {job.runId} was delivered already; it is not delivered again"))
            changes["destinations"] = job.destinations + added
        if not changes and state == job.state:
            return job
        return await self.jobs.advance(job, state, detail="requested again", **changes)

    # The steps

    def _client(self, server: str) -> BackupRemoteClient:
        return self._servers(server)

    async def _drive(self, job: Job, observer: JobObserver) -> Job:
        # every line of this drive (and the request ids of its calls) names the run
        bindLogContext(runId=job.runId, scheduleId=job.scheduleId or "-", server=job.server)
        backoff = self._retry() if self._retry is not None else None
        if self.watchers:
            observer = _Observers([observer] + [watch(job.runId) for watch in self.watchers])
        started = job.state
        while not job.finished:
            step = job.nextStep
            assert step is not None
            try:
                job = await getattr(self, "_" + step)(job, observer)
            except JobMoved:
                raise
            except BackupRemoteError as error:
                if error.code not in NOT_THE_JOBS_FAULT or isinstance(error, DeliveryFailed):
                    job = await self._failed(job, step, error)
                elif backoff is not None and backoff.retries(error):
                    _log.warn("run {runId}: {step} waits for the server: {errorCode}: "
                              "{errorMessage}", runId=job.runId, step=step,
                              errorCode=error.code, errorMessage=error.message)
                    await backoff.wait(error)
                    job = await self._fresh(job)
                    continue
                else:
                    raise
            except OSError as error:
                job = await self._failed(job, step, BackupRemoteError(
                    INTERNAL_ERROR, f"{step} failed on this machine: {error}"))
            if backoff is not None:
                backoff.succeeded()
            _log.info("run {runId}: {step} done, {state}", runId=job.runId, step=step,
                      state=job.state)
            observer.stepDone(job)
        if job.state != started:
            self._tellEnd(job, started)
        return job

    def _tellEnd(self, job: Job, started: str) -> None:
        """Tell the notifier a job this drive moved failed, or got delivered."""
        if self._notify is None:
            return  # (a CLI command's runner: no notifier, and none of its modules)
        from backupremote.client.notify.events import RunFailed, RunSucceeded

        database = job.databaseConfigId or "(a run started elsewhere)"
        if job.state == FAILED:
            self._notify(RunFailed(job.runId, job.scheduleId, job.server, database,
                                   job.errorCode or INTERNAL_ERROR, job.errorMessage or "",
                                   step=job.failedStep))
        elif reached(job.state, "delivered") and not reached(started, "delivered"):
            self._notify(RunSucceeded(
                job.runId, job.scheduleId, job.server, database,
                tuple(r.destination for r in job.receipts),
                job.artifact.sizeBytes if job.artifact is not None else None))

    async def _fresh(self, job: Job) -> Job:
        fresh = await self.jobs.get(job.runId)
        return fresh if fresh is not None else job

    async def _failed(self, job: Job, step: str, error: BackupRemoteError) -> Job:
        _log.error("run {runId}: {step} failed: {errorCode}: {errorMessage}", runId=job.runId,
                   step=step, errorCode=error.code, errorMessage=error.message,
                   scheduleId=job.scheduleId)
        return await self.jobs.advance(job, FAILED, detail=step, failedStep=step,
                                       errorCode=error.code, errorMessage=error.message)

    async def _execute(self, job: Job, observer: JobObserver) -> Job:
        assert job.databaseConfigId is not None
        status = await self._client(job.server).executeBackup(
            job.runId, job.databaseConfigId, job.options, job.scheduleId)
        return await self.jobs.advance(
            job, "running", status=status,
            detail="executeBackup" + (" (the server knew the run already)"
                                      if status.duplicate else ""))

    async def _follow(self, job: Job, observer: JobObserver) -> Job:
        final = await self._client(job.server).followRun(job.runId, observer.runEvent)
        if final.state == "completed":
            return await self.jobs.advance(job, "completed", status=final)
        staged = final.artifact is not None and final.artifact.staged
        if job.databaseConfigId is None and staged:
            # a run asked for by its id only (``download RUNID``) whose
            # post-script failed: its artifact is whole, and was asked for
            return await self.jobs.advance(job, "completed", status=final,
                                           detail=f"the run ended {final.state} "
                                           f"({final.errorCode}); its artifact is staged")
        return await self.jobs.advance(
            job, CANCELLED if final.state == "cancelled" else FAILED, detail="follow",
            status=final, failedStep="follow", errorCode=final.errorCode,
            errorMessage=final.errorMessage)

    async def _download(self, job: Job, observer: JobObserver) -> Job:
        assert job.downloadFolder is not None
        client = self._client(job.server)
        manifest = await client.listFiles(job.runId)
        if not manifest.files:
            raise BackupRemoteError(NOT_FOUND, f"run {job.runId} staged no file")
        path = await client.download(job.runId, FilePath(job.downloadFolder),
                                     observer.downloadProgress, **self._downloadOptions)
        self._justDownloaded[job.runId] = _identity(path)
        return await self.jobs.advance(job, "downloaded", artifact=manifest.files[0],
                                       artifactPath=path.path)

    async def _verify(self, job: Job, observer: JobObserver) -> Job:
        assert job.artifact is not None and job.artifactPath is not None
        path = FilePath(job.artifactPath)
        if not path.exists():
            raise BackupRemoteError(VERIFICATION_FAILED, (
                f"the downloaded {path.path} is gone; start the job again to download it "
                "anew"))
        if self._justDownloaded.pop(job.runId, None) == _identity(path):
            # The download step of this drive hashed every byte it wrote and checked the
            # whole against the manifest a moment ago (1 GiB read again: ~0.7 s of a
            # CLI download). A job resumed later, in this process or another, is read again.
            digest = job.artifact.sha256
        else:
            digest = await self._runInThread(fileSha256, path)
        expected = {job.artifact.sha256}
        artifact = job.status.artifact if job.status is not None else None
        if artifact is not None and artifact.checksum == "sha256" and artifact.digest:
            expected.add(artifact.digest)
        if expected != {digest}:
            await self._runInThread(path.remove)
            raise BackupRemoteError(VERIFICATION_FAILED, (
                f"{path.path} changed after its download (its SHA-256 no longer matches the "
                "server's); it was removed: start the job again to download it anew"))
        return await self.jobs.advance(job, "verified", detail=f"sha256 {digest}")

    async def _deliver(self, job: Job, observer: JobObserver) -> Job:
        assert job.artifactPath is not None
        if not job.destinations:
            return await self.jobs.advance(job, "delivered", detail="no destination")
        receipts = await self._delivery.deliver(job, FilePath(job.artifactPath),
                                                observer.uploadProgress)
        return await self.jobs.advance(job, "delivered", receipts=receipts,
                                       detail=", ".join(r.destination for r in receipts))

    async def _release(self, job: Job, observer: JobObserver) -> Job:
        released = await self._client(job.server).releaseArtifact(job.runId)
        if not job.keepDownload and job.receipts and job.downloadFolder is not None:
            # delivered: the work copy is one copy too many
            await self._runInThread(_removeWorkCopy, FilePath(job.downloadFolder))
        return await self.jobs.advance(
            job, "released", detail="staging released" if released else
            "the server had nothing staged any more")


class _Observers(JobObserver):
    """Tells each of several observers."""

    def __init__(self, observers: list[JobObserver]) -> None:
        self._observers = observers

    def runEvent(self, event: RunEvent) -> None:
        for observer in self._observers:
            observer.runEvent(event)

    def downloadProgress(self, progress: DownloadProgress) -> None:
        for observer in self._observers:
            observer.downloadProgress(progress)

    def uploadProgress(self, progress: UploadProgress) -> None:
        for observer in self._observers:
            observer.uploadProgress(progress)

    def stepDone(self, job: Job) -> None:
        for observer in self._observers:
            observer.stepDone(job)


def _logEnd(job: Job) -> Job:
    requestId = job.status.requestId if job.status is not None else None
    with logContext(runId=job.runId, scheduleId=job.scheduleId or "-", server=job.server,
                    requestId=requestId or job.runId):
        _logEndHere(job)
    return job


def _logEndHere(job: Job) -> None:
    if job.succeeded:
        _log.info("run {runId}: {state}", runId=job.runId, state=job.state,
                  scheduleId=job.scheduleId)
    elif job.failedStep == "follow":  # the other steps say so as they fail
        _log.warn("run {runId} ended {state} on the server: {errorCode}: {errorMessage}",
                  runId=job.runId, state=job.state, errorCode=job.errorCode,
                  errorMessage=job.errorMessage, scheduleId=job.scheduleId)


def _removeWorkCopy(folder: FilePath) -> None:
    if folder.exists():
        folder.remove()


def daemonRetry(clock: IReactorTime) -> Callable[[], Backoff]:
    """The daemon's patience with an unreachable server: forever, up to 5 minutes apart."""
    return lambda: Backoff(clock, first=5.0, maximum=300.0, jitter=1.0, maxFailures=None)


def jobRunnerIn(reactor: IDestinationReactor, dataDir: FilePath, store: Any, servers: Servers,
                retry: Callable[[], Backoff] | None = None,
                notify: EventSink | None = None, licenses: Any = None,
                policy: Any = None, delivery: IDelivery | None = None) -> JobRunner:
    """
    The job runner of a client's data folder (downloads in C{downloads/},
    locks in C{locks/}), as the daemon and the CLI build it. It delivers to
    local folders by copy and to named destinations through the delivery
    queue (L{backupremote.client.delivery}, with C{policy}: client.toml's
    C{[delivery]}), as far as C{licenses} (the licence of each server, by
    name: C{licensesOf(config, now(reactor))}) allow; without them, no named
    destination is delivered to. The daemon passes its own C{delivery} (a
    queue it starts itself, and observes); otherwise the queue is made at
    the first job that has a destination (L{DeliveryWhenNeeded}).
    """

    def build() -> IDelivery:
        from backupremote.client.delivery import DeliveryPolicy, FeatureSet, queueDeliveryIn

        return queueDeliveryIn(reactor, dataDir, store, licenses or (
            lambda server: FeatureSet(set())), policy or DeliveryPolicy())

    deliver: Any = delivery or DeliveryWhenNeeded(build)
    return JobRunner(reactor, JobStore(store, now(reactor)), servers,
                     deliver, dataDir.child("downloads"),
                     locks=JobLocks(dataDir.child("locks")), retry=retry, notify=notify)


def logStopped(failure: Failure, runId: str) -> None:
    """
    Log why a drive of C{runId} stopped short of its goal: a registry error
    waits (the job is resumed later), anything else is a bug. A cancel (the
    daemon stopping) says nothing.
    """
    error = failure.value
    if isinstance(error, CancelledError):
        return None
    with logContext(runId=runId, requestId=getattr(error, "requestId", None)):
        if isinstance(error, BackupRemoteError):
            _log.warn("run {runId} waits: {errorCode}: {errorMessage}", runId=runId,
                      errorCode=error.code, errorMessage=error.message)
        else:
            _log.failure("run {runId} stopped on an unexpected error", failure, runId=runId)
    return None


def _identity(path: FilePath[str]) -> tuple[int, int, int]:
    """The file C{path} is (device, inode) and its size; (0, 0, -1) if it is gone."""
    try:
        status = os.stat(path.path)
    except OSError:
        return (0, 0, -1)
    return (status.st_dev, status.st_ino, status.st_size)
