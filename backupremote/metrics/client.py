"""
The client daemon's metrics: one registry per daemon and the small API its
parts call to record what they do.

    metrics = ClientMetrics(reactor)
    runner.watchers.append(metrics.watchJob)        # runs, steps, downloads
    notifier-side: metrics.event(event)             # an EventSink: schedules
                                                    # missed/skipped, breakers
    metrics.sampleServers(servers)                  # connected, licence expiry

and the calls of the daemon's other parts (each is cheap and thread-safe):

    metrics.deliveryEnded(destination, outcome, seconds)   # the delivery queue,
                                                           # once per attempt
    metrics.sampleQueue(queue.depths)                      # read at each scrape
    metrics.circuit(destination, isOpen)                   # the queue's breakers
    metrics.nextFire(scheduleName, when)                   # the scheduler
    metrics.scheduleRejected("create" | "update")          # (not called yet)

The daemon (L{backupremote.client.service}) hands its parts a notify
callable that tells both the notifier and L{ClientMetrics.event}.

Labels are bounded: destination and schedule names come from the client's
configuration; no run id is ever a label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from backupremote.client.jobs.runner import JobObserver
from backupremote.metrics.distribution import DURATION_BUCKETS
from backupremote.metrics.sampling import onReactor
from backupremote.protocol.versions import SOFTWARE_VERSION

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

    from backupremote.reactors import IMetricsReactor

#: The job states whose steps are timed, and the step that leaves each.
_STEP_OF = {"pending": "execute", "running": "follow", "completed": "download",
            "downloaded": "verify", "verified": "deliver", "delivered": "release"}
_ORDER = ("pending", "running", "completed", "downloaded", "verified", "delivered", "released")
QUEUE_STATES = ("pending", "uploading", "verifying", "retrying", "failed")


class ClientMetrics:
    """Every family the client daemon exposes, in its own registry."""

    def __init__(self, reactor: IMetricsReactor,
                 registry: CollectorRegistry | None = None) -> None:
        self.reactor = reactor
        self._rejectionsSeen: dict[str, int] = {}
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        info = Gauge("backupremote_build_info", "The running software.",
                     ["version", "daemon"], registry=r)
        info.labels(SOFTWARE_VERSION, "client").set(1)
        Gauge("backupremote_start_time_seconds", "When the daemon started (Unix time).",
              registry=r).set(reactor.seconds())
        self.runs = Counter("backupremote_runs", "Jobs (runs followed by this client) that "
                            "ended, by final state.", ["state"], registry=r)
        self.jobDuration = Histogram(
            "backupremote_job_duration_seconds",
            "Jobs from their command to their end (delivered, released or failed), "
            "by final state.", ["state"], buckets=DURATION_BUCKETS, registry=r)
        self.stepDuration = Histogram(
            "backupremote_job_step_duration_seconds",
            "Steps of a job (execute, follow, download, verify, deliver, release).",
            ["step"], buckets=DURATION_BUCKETS, registry=r)
        self.downloadDuration = Histogram(
            "backupremote_download_duration_seconds",
            "Downloads of an artifact, from the first chunk asked to the verified file.",
            buckets=DURATION_BUCKETS, registry=r)
        self.downloadResumes = Counter(
            "backupremote_download_resumes", "Downloads taken up again past their start "
            "(after a restart or a dropped connection).", registry=r)
        self.downloadBytes = Counter(
            "backupremote_download_bytes", "Artifact bytes downloaded.", registry=r)
        self.downloadsActive = Gauge(
            "backupremote_downloads_active", "Downloads in flight.", registry=r)
        self.deliveries = Counter(
            "backupremote_deliveries", "Deliveries to a destination, by outcome "
            "(delivered, failed, retrying).", ["destination", "outcome"], registry=r)
        self.deliveryDuration = Histogram(
            "backupremote_delivery_duration_seconds",
            "Deliveries to a destination (upload and read-back).", ["destination"],
            buckets=DURATION_BUCKETS, registry=r)
        self.circuitOpen = Gauge(
            "backupremote_destination_circuit_open",
            "1 while a destination's circuit breaker is open.", ["destination"], registry=r)
        self.schedulesRejected = Counter(
            "backupremote_schedule_rejected", "Schedule creations or updates refused "
            "(invalid, or a destination the licence does not name), by operation.",
            ["op"], registry=r)
        self.scheduleFires = Counter(
            "backupremote_schedule_fires", "Schedule slots, by outcome "
            "(missed, skipped).", ["outcome"], registry=r)
        self.nextFires = Gauge(
            "backupremote_schedule_next_fire_timestamp_seconds",
            "When each enabled schedule fires next (Unix time).", ["schedule"], registry=r)
        for op in ("create", "update"):
            self.schedulesRejected.labels(op)
        for outcome in ("missed", "skipped"):
            self.scheduleFires.labels(outcome)
        for state in ("delivered", "released", "failed", "cancelled"):
            self.runs.labels(state)
        self._samplers = _Samplers(reactor)
        r.register(self._samplers)

    # The job runner: one observer per drive (JobRunner.watchers)

    def watchJob(self, runId: str) -> _JobWatch:
        """An observer of one drive of a job (C{runner.watchers.append(metrics.watchJob)})."""
        return _JobWatch(self)

    # Notifications' events (an EventSink)

    def event(self, event: Any) -> None:
        """Record what a notification event says (schedules, breakers)."""
        name = type(event).__name__
        if name == "ScheduleMissed":
            self.scheduleFires.labels("missed").inc()
        elif name == "ScheduleSkipped":
            self.scheduleFires.labels("skipped").inc()
        elif name == "DestinationCircuitOpened":
            self.circuit(event.destination, True)
        elif name == "DestinationCircuitClosed":
            self.circuit(event.destination, False)

    # Calls for the delivery queue and the scheduler

    def deliveryEnded(self, destination: str, outcome: str, seconds: float | None) -> None:
        """One delivery attempt ended: C{delivered}, C{retrying} or C{failed}."""
        self.deliveries.labels(destination, outcome).inc()
        if seconds is not None:
            self.deliveryDuration.labels(destination).observe(seconds)

    def circuit(self, destination: str, isOpen: bool) -> None:
        self.circuitOpen.labels(destination).set(1 if isOpen else 0)

    def scheduleRejected(self, op: str, count: int = 1) -> None:
        self.schedulesRejected.labels(op).inc(count)

    def rejectionsSeen(self, counts: Mapping[str, int]) -> None:
        """
        The refusals the client store holds (C{op} -> count, kept by the CLI,
        which refuses schedules in a process of its own): what is new since
        the last look is added, so the counter counts every refusal once.
        """
        for op, count in counts.items():
            new = count - self._rejectionsSeen.get(op, 0)
            if new > 0:
                self.scheduleRejected(op, new)
            self._rejectionsSeen[op] = count

    def nextFire(self, schedule: str, when: datetime | None) -> None:
        """C{schedule} fires next at C{when} (C{None}: not any more)."""
        if when is None:
            try:
                self.nextFires.remove(schedule)
            except KeyError:
                pass
        else:
            self.nextFires.labels(schedule).set(when.timestamp())

    def sampleQueue(self, depths: Callable[[], Mapping[str, int]]) -> None:
        """C{depths()} (read on the reactor at each scrape): queue items by state."""
        self._samplers.queue = depths

    def sampleServers(self, servers: Any) -> None:
        """
        C{servers} (a L{backupremote.client.servers.ClientServers}): each one's
        C{connected} and C{licenseExpiresAt}, read at each scrape.
        """
        self._samplers.servers = servers


class _JobWatch(JobObserver):
    """Times one drive's steps; counts its end, its download's bytes and resumes."""

    def __init__(self, metrics: ClientMetrics) -> None:
        self._metrics = metrics
        self._clock = metrics.reactor
        self._since = self._clock.seconds()
        self._downloading = False
        self._lastBytes: int | None = None
        self._resumeSeen = False
        self._reconnects = 0

    def runEvent(self, event: Any) -> None:
        pass

    def downloadProgress(self, progress: Any) -> None:
        metrics = self._metrics
        if not self._downloading and progress.phase != "done":
            self._downloading = True
            metrics.downloadsActive.inc()
        if progress.resumedFrom and not self._resumeSeen:
            self._resumeSeen = True
            metrics.downloadResumes.inc()
        if progress.reconnects > self._reconnects:
            metrics.downloadResumes.inc(progress.reconnects - self._reconnects)
            self._reconnects = progress.reconnects
        if progress.phase == "downloading" or progress.phase == "done":
            last = self._lastBytes
            if last is not None and progress.bytesDone > last:
                metrics.downloadBytes.inc(progress.bytesDone - last)
            elif last is None and progress.phase == "downloading":
                start = progress.resumedFrom * _chunkBytes(progress)
                if progress.bytesDone > start:
                    metrics.downloadBytes.inc(progress.bytesDone - start)
            self._lastBytes = progress.bytesDone
        if progress.phase == "done":
            self._stopDownloading()

    def _stopDownloading(self) -> None:
        if self._downloading:
            self._downloading = False
            self._metrics.downloadsActive.dec()

    def stepDone(self, job: Any) -> None:
        metrics = self._metrics
        now = self._clock.seconds()
        seconds, self._since = now - self._since, now
        step = _stepInto(job.state, job.failedStep)
        if step is not None:
            metrics.stepDuration.labels(step).observe(seconds)
            if step == "download":
                metrics.downloadDuration.observe(seconds)
                self._stopDownloading()
            if step == "deliver" and job.state != "failed":
                # copies to local folders; the delivery queue counts its own
                from backupremote.client.jobs.model import LocalFolder

                folders = {d.name for d in job.destinations if isinstance(d, LocalFolder)}
                for receipt in job.receipts:
                    if receipt.destination in folders:
                        metrics.deliveryEnded(receipt.destination, "delivered", None)
        if job.finished:
            self._stopDownloading()
            if job.state in ("failed", "cancelled") or job.state == job.goal:
                metrics.runs.labels(job.state).inc()
                created = job.createdAt.timestamp()
                metrics.jobDuration.labels(job.state).observe(max(0.0, now - created))


def _stepInto(state: str, failedStep: str | None) -> str | None:
    """The step that just moved a job into C{state}."""
    if state in ("failed", "cancelled"):
        return failedStep
    if state in _ORDER and _ORDER.index(state) > 0:
        return _STEP_OF[_ORDER[_ORDER.index(state) - 1]]
    return None


def _chunkBytes(progress: Any) -> int:
    if progress.chunkCount <= 0:
        return 0
    return -(-progress.sizeBytes // progress.chunkCount)


class _Samplers(Collector):
    """Families read from the daemon's parts at each scrape, on the reactor thread."""

    def __init__(self, reactor: IReactorFromThreads) -> None:
        self._reactor = reactor
        self.queue: Callable[[], Mapping[str, int]] | None = None
        self.servers: Any = None

    def collect(self) -> Iterator[Metric]:
        return iter(onReactor(self._reactor, self._families))

    def _families(self) -> list[Metric]:
        connected = GaugeMetricFamily(
            "backupremote_server_connected",
            "1 while this client holds an authenticated connection to the server.",
            labels=["server"])
        expiry = GaugeMetricFamily(
            "backupremote_license_expiry_timestamp_seconds",
            "When the licence each server granted at the last login expires (Unix time).",
            labels=["server"])
        queue = GaugeMetricFamily(
            "backupremote_delivery_queue_items", "Deliveries in the queue, by state.",
            labels=["state"])
        if self.servers is not None:
            for name in self.servers.names:
                status = self.servers.status(name)
                connected.add_metric([name], 1 if status.connected else 0)
                if status.licenseExpiresAt is not None:
                    expiry.add_metric([name], status.licenseExpiresAt.timestamp())
        depths = dict(self.queue()) if self.queue is not None else {}
        for state in sorted(set(QUEUE_STATES) | set(depths)):
            queue.add_metric([state], depths.get(state, 0))
        return [connected, expiry, queue]


def addClientMetrics(top: Any, reactor: IMetricsReactor, config: Any, jobs: Any = None,
                     servers: Any = None) -> ClientMetrics | None:
    """
    The client daemon's metrics, when C{config.metrics} (C{[metrics]}) has
    a C{listen}: a L{ClientMetrics} watching every drive of C{jobs} and
    sampling C{servers}, served by a C{MetricsService} named C{metrics}
    under C{top}. C{None} when metrics are off.
    """
    if not config.metrics.enabled:
        return None
    from backupremote.metrics.endpoint import MetricsService

    metrics = ClientMetrics(reactor)
    if jobs is not None:
        jobs.watchers.append(metrics.watchJob)
    if servers is not None:
        metrics.sampleServers(servers)
    service = MetricsService(reactor, config.metrics, metrics.registry)
    service.setName("metrics")  # type: ignore[no-untyped-call]
    service.setServiceParent(top)  # type: ignore[no-untyped-call]
    return metrics
