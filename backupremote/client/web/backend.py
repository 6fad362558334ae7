"""
What the dashboard reads and does, over the daemon's own parts.

L{DashboardBackend} reads the schedules (L{ScheduleStore}), the jobs
(L{JobStore}) and the servers, and acts through the same parts as the CLI:
a run now through a L{JobStarter} (the daemon's own, the scheduler's:
a schedule's destination names become its deliveries there), pause and
resume by storing the schedule's C{enabled}, cancel through the library
client of the run's server, retry through an L{IDeliveryQueue}: in the
daemon a L{ClientQueue} over its job store and its delivery queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from attrs import evolve, frozen
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.filepath import FilePath

from backupremote.client.api import BackupRemoteClient
from backupremote.client.delivery.model import DELIVERED, RETRYING
from backupremote.client.delivery.queue import DeliveryQueue
from backupremote.client.jobs import FAILED, Job, JobRequest, JobRunner, JobStore
from backupremote.client.jobs.model import RETRYABLE
from backupremote.client.schedules.model import Schedule
from backupremote.client.schedules.nextfire import nextFire
from backupremote.client.schedules.scheduler import JobStarter, runNowRequest
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.web.events import LiveEvents, LiveProgress
from backupremote.license import parseToken
from backupremote.protocol.errors import CONFIG_INVALID, CONFLICT, NOT_FOUND, BackupRemoteError
from backupremote.protocol.runs import RunStatus

UTC = timezone.utc
#: Runs on the history page.
HISTORY = 50
#: The states of a job that are the client's side of a run (the queue's).
_CLIENT_SIDE = {"completed": "downloading", "downloaded": "verifying", "verified": "uploading",
                "delivered": "releasing"}


@frozen
class ServerEntry:
    """One server of client.toml, as the dashboard shows it."""

    name: str
    address: str
    client: BackupRemoteClient
    licenseFile: FilePath | None = None


@frozen
class ServerView:
    name: str
    address: str
    connected: bool
    licensee: str | None = None
    licenseExpiresAt: datetime | None = None
    #: why the licence file cannot be read, if it cannot
    problem: str | None = None


@frozen
class ScheduleView:
    schedule: Schedule
    nextFire: datetime | None


@frozen
class QueueItem:
    """
    One transfer of the client's: a download, or a delivery to a
    destination. C{state} is one of C{downloading}, C{verifying},
    C{uploading}, C{releasing} (a job's steps) or the delivery queue's
    C{pending}, C{uploading}, C{verifying}, C{delivered}, C{retrying},
    C{failed}.
    """

    id: str
    runId: str
    destination: str
    state: str
    reason: str | None = None
    nextAttemptAt: datetime | None = None
    retryable: bool = False


class IDeliveryQueue(Protocol):
    """The transfers the dashboard lists, and the retry it offers."""

    def items(self) -> Deferred[list[QueueItem]]:
        """In flight, waiting to retry (why), failed (why)."""

    def retry(self, itemId: str) -> Deferred[Any]:
        """Try that item again now (C{NOT_FOUND}, or C{CONFLICT} if it cannot be)."""


class ClientQueue:
    """
    The daemon's transfers: each run's download (from its job), and each
    item of the delivery queue but those delivered. A failed (or waiting)
    delivery is retried through the queue, due now; if its run had failed
    at its deliver step, the job runner takes the run up again, so that it
    goes on to release the server's staging once delivered. A run that
    failed at another step of the client's (download, verify, release) is
    retried from that step.
    """

    def __init__(self, jobs: JobStore, runner: JobRunner, deliveries: DeliveryQueue) -> None:
        self._jobs = jobs
        self._runner = runner
        self._deliveries = deliveries

    def items(self) -> Deferred[list[QueueItem]]:
        async def items() -> list[QueueItem]:
            queued = [item for item in await self._deliveries.deliveries.list()
                      if item.state != DELIVERED]
            withItems = {item.runId for item in queued}
            found = [item for item in map(self._jobItem, await self._jobs.recent(200))
                     if item is not None and item.runId not in withItems]
            found += [QueueItem(item.id, item.runId, item.destination, item.state, item.reason,
                                item.nextAttemptAt, retryable=item.state in (FAILED, RETRYING))
                      for item in reversed(queued)]
            return found

        return Deferred.fromCoroutine(items())

    def _jobItem(self, job: Job) -> QueueItem | None:
        where = ", ".join(d.name for d in job.destinations) or "(no destination)"
        if job.state == FAILED and job.failedStep in RETRYABLE:
            return QueueItem(job.runId, job.runId, where, "failed",
                             f"{job.failedStep}: {job.errorCode}: {job.errorMessage}",
                             retryable=True)
        if job.state in _CLIENT_SIDE and not job.finished:
            return QueueItem(job.runId, job.runId, where, _CLIENT_SIDE[job.state])
        return None

    def retry(self, itemId: str) -> Deferred[Any]:
        async def retry() -> Any:
            try:
                item = await self._deliveries.retry(itemId)
            except BackupRemoteError as error:
                if error.code != NOT_FOUND:
                    raise
                job = await self._jobs.get(itemId)
                if job is None:
                    raise BackupRemoteError(NOT_FOUND, f"no transfer {itemId}") from None
                if job.state != FAILED or job.failedStep not in RETRYABLE:
                    raise BackupRemoteError(CONFLICT, f"run {itemId} has no failed transfer "
                                                      "to try again") from None
            else:
                job = await self._jobs.get(item.runId)
                if job is None or job.state != FAILED or job.failedStep != "deliver":
                    return item  # its run waits for it, or has no job here
            return await self._runner.submit(JobRequest(runId=job.runId, server=job.server,
                                                        goal=job.goal))

        return Deferred.fromCoroutine(retry())


class DashboardBackend:
    """Everything the pages read and every action they offer."""

    def __init__(self, clock: IReactorTime, schedules: ScheduleStore, jobs: JobStore,
                 servers: Sequence[ServerEntry], starter: JobStarter, queue: IDeliveryQueue,
                 live: LiveEvents) -> None:
        self.clock = clock
        self.schedules = schedules
        self.jobs = jobs
        self.servers = {server.name: server for server in servers}
        self.starter = starter
        self.queue = queue
        self.live = live

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.seconds(), UTC)

    # Reading

    async def serverViews(self) -> list[ServerView]:
        return [_serverView(server) for server in self.servers.values()]

    async def scheduleViews(self) -> list[ScheduleView]:
        now = self.now()
        return [ScheduleView(s, nextFire(s, now) if s.enabled else None)
                for s in sorted(await self.schedules.list(), key=lambda s: s.name.lower())]

    async def activeRuns(self) -> list[tuple[Job, LiveProgress | None]]:
        jobs = await self.jobs.unfinished()
        return [(job, self.live.progress.get(job.runId)) for job in reversed(jobs)]

    async def history(self, limit: int = HISTORY) -> list[Job]:
        return [job for job in await self.jobs.recent(limit) if job.finished]

    async def run(self, runId: str) -> tuple[Job, list[tuple[str, datetime, str | None]]]:
        job = await self.jobs.get(runId)
        if job is None:
            raise BackupRemoteError(NOT_FOUND, f"this client has no run {runId}")
        return job, await self.jobs.steps(runId)

    async def scheduleNames(self) -> dict[str, str]:
        return {s.id: s.name for s in await self.schedules.list()}

    async def queueItems(self) -> list[QueueItem]:
        return await self.queue.items()

    # Acting (each says what it did, for the page and the log)

    async def runNow(self, scheduleId: str) -> str:
        schedule = await self.schedules.get(scheduleId)
        request = runNowRequest(schedule)
        await self.starter.start(request)
        return f"started run {request.runId} of schedule {schedule.name}"

    async def setEnabled(self, scheduleId: str, enabled: bool) -> str:
        schedule = await self.schedules.get(scheduleId)
        if schedule.enabled != enabled:
            schedule = await self.schedules.update(evolve(schedule, enabled=enabled),
                                                   self.now())
            self.live.publish("schedule", {"scheduleId": schedule.id,
                                           "enabled": schedule.enabled})
        return f"{'resumed' if enabled else 'paused'} schedule {schedule.name}"

    async def cancel(self, runId: str) -> str:
        job = await self.jobs.get(runId)
        if job is None:
            raise BackupRemoteError(NOT_FOUND, f"this client has no run {runId}")
        if job.state not in ("pending", "running"):
            raise BackupRemoteError(CONFLICT, (
                f"run {runId} is {job.state}: only a run on the server can be cancelled"))
        server = self.servers.get(job.server)
        if server is None:
            raise BackupRemoteError(CONFIG_INVALID, f"client.toml names no server {job.server!r}")
        status: RunStatus = await server.client.cancelBackup(runId)
        return f"asked the server to cancel run {runId} (it is {status.state})"

    async def retry(self, itemId: str) -> str:
        await self.queue.retry(itemId)
        return f"trying transfer {itemId} again"


def _serverView(server: ServerEntry) -> ServerView:
    licensee = expires = problem = None
    if server.licenseFile is not None:
        try:
            license, _, _ = parseToken(server.licenseFile.getContent().decode("utf-8"))
            licensee, expires = license.licensee, license.expiresAt
        except (OSError, UnicodeDecodeError, BackupRemoteError) as error:
            problem = getattr(error, "message", None) or "the licence file cannot be read"
    return ServerView(server.name, server.address, isConnected(server.client), licensee,
                      expires, problem)


def isConnected(client: BackupRemoteClient) -> bool:
    """Whether the daemon's connection to that server is up now (never waits)."""
    service = getattr(client.connection, "service", None)
    if service is None or not service.running:
        return False
    waiting = service.whenConnected()
    connected = waiting.called
    if not connected:
        waiting.addErrback(lambda failure: failure.trap(CancelledError))
        waiting.cancel()
    else:
        waiting.addErrback(lambda failure: None)
    return connected
