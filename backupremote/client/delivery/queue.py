"""
The delivery queue: every run's artifact to each of its named destinations,
one persisted step at a time, with retries, breakers and caps.

    queue = DeliveryQueue(clock, DeliveryStore(store, now(clock)), registry.openByName,
                          lambda server: LicenseFileFeatures(licenseFile, now(clock)))
    queue.start()                                  # recovers in-flight items, then works
    items = await queue.enqueue(job, artifact, destinations)
    items = await queue.whenSettled(job.runId)     # each delivered or failed
    await queue.stop()

An attempt of an item: check the licence of the destination's type (fail
closed: C{failed} with the licence's code, never skipped), C{uploading}
(put under a temporary name, handed the artifact's size and SHA-256 as a
L{KnownDigest} so the source is not hashed again), C{verifying} (the
temporary file recorded: read back, compare size and SHA-256 with the
artifact's, complete under the final name),
C{delivered} (with its receipt). A read-back that differs is told apart
by hashing the local file (in C{runInThread}): if that no longer is the
artifact, the item fails for good (C{VERIFICATION_FAILED}, as when the put
sent another size), else it is the destination's fault
(C{DESTINATION_VERIFY_FAILED}) and is retried. A failure waits (C{retrying}, with the
reason and the next attempt's time: exponential backoff with full jitter
from L{backupremote.client.backoff.Backoff}), or ends the item (C{failed})
once its attempts are used up or for a refusal another try cannot mend.

A destination whose attempts fail N times in a row opens its circuit
breaker: its items wait until a delay has passed, then one probe goes.
At most C{parallel} attempts run at once, C{parallelPerDestination} to one
destination. A breaker that opens is told to C{notify} (the daemon's
notifier) as L{DestinationCircuitOpened}, and as L{DestinationCircuitClosed}
once a delivery to that destination succeeds again; C{metrics} (the
daemon's L{backupremote.metrics.ClientMetrics}) is told each attempt's end
and each breaker's state, and L{DeliveryQueue.depths} is what its scrapes
read. After a restart, an item left C{uploading} is attempted again; one
left C{verifying} is read back where it stopped.

Each attempt's put has the item's L{DeliveryJournal}: a destination that
can resume (S3 multipart) records its upload there, part by part, and the
next attempt, after a failure, a stop or a restart, takes it up where the
server confirmed it (the destination starts over if the upload is gone or
the local file changed). The record is dropped once the put is done, and
the upload itself removed when the item fails for good.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from backupremote.client.backoff import Backoff
from backupremote.client.delivery.breaker import CircuitBreakers
from backupremote.client.delivery.journal import DeliveryJournal
from backupremote.client.delivery.licence import IDestinationLicense
from backupremote.client.delivery.model import (
    DELIVERED,
    FAILED,
    PENDING,
    RETRYING,
    UPLOADING,
    VERIFYING,
    WAITING,
    QueueItem,
)
from backupremote.client.delivery.policy import DeliveryPolicy
from backupremote.client.delivery.store import DeliveryStore, ItemMoved, isSettled, newItemId
from backupremote.client.destinations.interface import IDestination, KnownDigest, UploadState
from backupremote.client.destinations.names import datedName
from backupremote.client.destinations.verified import (
    checkReadBack,
    checkSent,
    discard,
    localDigest,
)
from backupremote.client.jobs.model import Job, NamedDestination, UploadProgress
from backupremote.client.notify.events import DestinationCircuitClosed, DestinationCircuitOpened
from backupremote.client.notify.notifier import EventSink
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    DESTINATION_IDENTITY_MISMATCH,
    DESTINATION_NOT_FOUND,
    INTERNAL_ERROR,
    NOT_FOUND,
    VERIFICATION_FAILED,
    BackupRemoteError,
)
from backupremote.reactors import inThreadPool

_log = Logger(namespace="backupremote.client.delivery")

#: Refusals another attempt cannot mend: the item fails at once.
PERMANENT = frozenset({CONFIG_INVALID, DESTINATION_IDENTITY_MISMATCH, NOT_FOUND,
                       VERIFICATION_FAILED})

Opener = Callable[[str], Deferred[IDestination]]
#: The licence of each server, by name: a run may deliver where its server's licence allows.
Licenses = Callable[[str], IDestinationLicense]


class DeliveryMetrics(Protocol):
    """What the queue tells the metrics (L{backupremote.metrics.ClientMetrics} is one)."""

    def deliveryEnded(self, destination: str, outcome: str, seconds: float | None) -> None:
        """An attempt ended: C{delivered}, C{retrying} or C{failed}, after C{seconds}."""

    def circuit(self, destination: str, isOpen: bool) -> None:
        """C{destination}'s breaker opened or closed."""


def _isPermanent(error: BackupRemoteError) -> bool:
    return error.code in PERMANENT or error.code.startswith("LICENSE_")


def _follow(deferred: Deferred[None]) -> Deferred[None]:
    """A new Deferred that fires as C{deferred} does (which stays usable)."""
    follower: Deferred[None] = Deferred()

    def relay(result: Any) -> None:
        if isinstance(result, Failure):
            follower.errback(result)
        else:
            follower.callback(None)

    deferred.addBoth(relay)
    return follower


def _recorded(item: QueueItem, journal: DeliveryJournal | None) -> UploadState | None:
    """The unfinished upload an attempt leaves recorded (its journal's, if it got that far)."""
    return journal.state if journal is not None else item.resume


def deliveryName(job: Job, fileName: str) -> str:
    """Where a job's artifact goes in each destination: C{YYYY-MM-DD/FILE} (UTC date)."""
    when = job.fireTime or job.createdAt
    return datedName(fileName, when.astimezone(timezone.utc))


class DeliveryQueue:
    """
    Works the C{deliveries} table: see the module docstring.

    @param opener: the L{IDestination} of a destination id (the registry's
        C{openByName}); it is closed after each attempt.
    @param licenses: the licence of a server (by name), asked before every
        attempt of a run of that server.
    @param random: the jitter's source (a fixed one in tests).
    @param metrics: told each attempt's end and each breaker's state.
    @param notify: told when a breaker opens and when it closes again.
    @param runInThread: runs blocking work (hashing the local file after a
        read-back that differs); C{clock}'s thread pool by default.
    """

    def __init__(self, clock: IReactorTime, deliveries: DeliveryStore, opener: Opener,
                 licenses: Licenses, policy: DeliveryPolicy = DeliveryPolicy(),
                 random: Callable[[], float] | None = None,
                 metrics: DeliveryMetrics | None = None,
                 notify: EventSink | None = None,
                 runInThread: Callable[..., Deferred[Any]] | None = None) -> None:
        self._clock = clock
        self._runInThread = runInThread or inThreadPool(clock)
        self._metrics = metrics
        self._notify = notify
        #: items by state, as of the last look for work (L{depths})
        self._depths: dict[str, int] = {}
        self.deliveries = deliveries
        self._open = opener
        self._licenses = licenses
        self.policy = policy
        self._backoff = Backoff(clock, random or _random.Random().random, first=policy.first,
                                maximum=policy.maximum, jitter=1.0, maxFailures=None)
        self.breakers = CircuitBreakers(policy.breakerFailures, policy.breakerDelay)
        #: item id -> the Deferred of its attempt in progress
        self._attempts: dict[str, Deferred[None]] = {}
        self._perDestination: dict[str, int] = {}
        self._waiters: dict[str, list[Deferred[list[QueueItem]]]] = {}
        self._timer: IDelayedCall | None = None
        self._kicking = False
        self._again = False
        self._running = False
        self._starting: Deferred[None] | None = None
        #: (item id, bytes sent) of each upload in flight, for progress
        self.progress: dict[str, int] = {}
        #: run id -> who is told how its uploads go (L{watch})
        self._watchers: dict[str, list[Callable[[UploadProgress], None]]] = {}

    def _seconds(self) -> float:
        return self._clock.seconds()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._seconds(), timezone.utc)

    # Life

    def started(self) -> Deferred[None]:
        """L{start} unless started (the job runner starts it with its first delivery)."""
        if self._starting is None:
            self.start()
        assert self._starting is not None
        return _follow(self._starting)

    def start(self) -> Deferred[None]:
        """Take up what a previous process left in flight, then work the queue."""

        async def start() -> None:
            self._running = True
            for item in await self.deliveries.list([UPLOADING]):
                how = "resumed" if item.resume is not None else "restarted"
                await self.deliveries.move(item, PENDING, upload=None,
                                           reason=f"{how}: the process ended mid-upload")
                _log.info("delivery {id} of run {runId} to {destination}: upload restarted"
                          if item.resume is None else
                          "delivery {id} of run {runId} to {destination}: upload to be resumed",
                          id=item.id, runId=item.runId, destination=item.destination)
            self.kick()

        done = Deferred.fromCoroutine(start())
        self._starting = done
        return _follow(done)

    def stop(self) -> Deferred[None]:
        """Stop attempts (they stay where they are, to be taken up at the next start)."""
        self._running = False
        self._starting = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for attempt in list(self._attempts.values()):
            attempt.cancel()
        return succeed(None)

    @property
    def active(self) -> list[str]:
        """The ids of the items being attempted now."""
        return sorted(self._attempts)

    def depths(self) -> dict[str, int]:
        """
        Items by state (delivered ones left out), as of the queue's last
        look for work: it never waits, for the metrics' scrapes.
        """
        return dict(self._depths)

    # Putting work in

    def enqueue(self, job: Job, artifact: FilePath,
                destinations: Iterable[NamedDestination]) -> Deferred[list[QueueItem]]:
        """Queue C{artifact} for each destination (once per run and destination)."""
        assert job.artifact is not None
        now = self._now()
        name = deliveryName(job, job.artifact.name)
        items = [QueueItem(
            id=newItemId(), runId=job.runId, server=job.server, destinationId=destination.id,
            destination=destination.name, scheduleId=job.scheduleId, name=name,
            source=artifact.path, size=job.artifact.sizeBytes, sha256=job.artifact.sha256,
            state=PENDING, attempts=0, createdAt=now, updatedAt=now)
            for destination in destinations]
        return self.deliveries.enqueue(items).addCallback(self._kicked)

    def _kicked(self, result: Any) -> Any:
        self.kick()
        return result

    def retry(self, id: str) -> Deferred[QueueItem]:
        """Put a failed item back in the queue, due now."""
        return self.deliveries.retry(id).addCallback(self._kicked)

    def watch(self, runId: str, watcher: Callable[[UploadProgress], None]
              ) -> Callable[[], None]:
        """
        Tell C{watcher} how the uploads of C{runId} go (L{UploadProgress}),
        until the returned function is called.
        """
        self._watchers.setdefault(runId, []).append(watcher)

        def unwatch() -> None:
            watchers = self._watchers.get(runId, [])
            if watcher in watchers:
                watchers.remove(watcher)
            if not watchers:
                self._watchers.pop(runId, None)

        return unwatch

    def _reporter(self, item: QueueItem) -> Callable[[int], None]:
        """
        The C{progress} of one attempt's C{put}: kept in L{progress}, and
        told to the run's watchers at its start, every 1 MiB or 1/200 of
        the file (whichever is more: a bounded number of updates), and at
        its end.
        """
        step = max(1 << 20, item.size // 200)
        told: list[int] = []

        def sent(count: int) -> None:
            self.progress[item.id] = count
            watchers = self._watchers.get(item.runId)
            if not watchers:
                return
            if told and count - told[-1] < step and not (
                    count >= item.size > told[-1]):
                return
            told[:] = [count]
            update = UploadProgress(item.runId, item.id, item.destination, item.name, count,
                                    item.size, item.attempts)
            for watcher in list(watchers):
                try:
                    watcher(update)
                except Exception:
                    _log.failure("a watcher of run {runId}'s uploads failed",
                                 runId=item.runId)

        return sent

    def whenSettled(self, runId: str) -> Deferred[list[QueueItem]]:
        """Fires with the run's items once each is delivered or failed."""
        waiter: Deferred[list[QueueItem]] = Deferred(
            lambda d: self._waiters.get(runId, []).remove(d) if d in self._waiters.get(
                runId, []) else None)
        self._waiters.setdefault(runId, []).append(waiter)
        self._checkSettled(runId)
        return waiter

    def _checkSettled(self, runId: str) -> None:
        if not self._waiters.get(runId):
            return

        def check(items: list[QueueItem]) -> None:
            if items and isSettled(items):
                for waiter in self._waiters.pop(runId, []):
                    waiter.callback(items)

        self.deliveries.forRun(runId).addCallback(check).addErrback(
            lambda f: _log.failure("cannot read the deliveries of {runId}", f, runId=runId))

    # Scheduling

    def kick(self) -> None:
        """Start what is due and allowed, and wake up when the next item is due."""
        if not self._running:
            return
        if self._kicking:
            self._again = True
            return
        self._kicking = True
        Deferred.fromCoroutine(self._kick()).addErrback(
            lambda f: _log.failure("the delivery queue could not look for work", f))

    async def _kick(self) -> None:
        try:
            while True:
                self._again = False
                waiting = await self.deliveries.waiting()
                now = self._now()
                seconds = self._seconds()
                wake: list[float] = []
                for item in waiting:
                    if item.id in self._attempts:
                        continue
                    if item.nextAttemptAt is not None and item.nextAttemptAt > now:
                        wake.append(item.nextAttemptAt.timestamp())
                        continue
                    if not self.breakers.allows(item.destinationId, seconds):
                        reopens = self.breakers.reopensAt(item.destinationId)
                        if reopens is not None and reopens > seconds:
                            wake.append(reopens)
                        continue
                    if len(self._attempts) >= self.policy.parallel:
                        break
                    if self._perDestination.get(item.destinationId, 0) >= \
                            self.policy.parallelPerDestination:
                        continue
                    self._begin(item)
                self._arm(min(wake) if wake else None)
                if self._running:
                    self._depths = await self.deliveries.counts(exclude=(DELIVERED,))
                if not self._again or not self._running:
                    return
        finally:
            self._kicking = False

    def _arm(self, at: float | None) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if at is not None and self._running:
            self._timer = self._clock.callLater(max(0.0, at - self._seconds()), self.kick)

    def _begin(self, item: QueueItem) -> None:
        self.breakers.started(item.destinationId, self._seconds())
        self._perDestination[item.destinationId] = \
            self._perDestination.get(item.destinationId, 0) + 1
        attempt = Deferred.fromCoroutine(self._attempt(item))
        self._attempts[item.id] = attempt

        def ended(result: Any) -> None:
            self._attempts.pop(item.id, None)
            self.progress.pop(item.id, None)
            self._perDestination[item.destinationId] -= 1
            self.breakers.ended(item.destinationId)
            if hasattr(result, "check") and not result.check(CancelledError):
                _log.failure("delivery {id} stopped on an unexpected error", result, id=item.id)
            self._checkSettled(item.runId)
            self.kick()

        attempt.addBoth(ended)

    # One attempt

    async def _attempt(self, item: QueueItem) -> None:
        destination: IDestination | None = None
        journal: DeliveryJournal | None = None
        began = self._seconds()
        try:
            destination = await self._open(item.destinationId)
            self._licenses(item.server).check(destination.type)
            if item.state in WAITING:
                item = await self.deliveries.move(
                    item, UPLOADING, attempts=item.attempts + 1, upload=None,
                    nextAttemptAt=None)
                report = self._reporter(item)
                report(0)
                journal = await DeliveryJournal.of(self.deliveries, item)
                artifact = KnownDigest(item.size, item.sha256)
                upload = await destination.put(FilePath(item.source), item.name, report,
                                               journal, known=artifact)
                try:
                    checkSent(destination, FilePath(item.source), upload, artifact)
                except BackupRemoteError:
                    await discard(destination, upload)
                    raise
                item = await self.deliveries.move(item, VERIFYING, upload=upload, resume=None)
            item = await self._verify(destination, item)
            recovered = self.breakers.isOpen(item.destinationId)
            self.breakers.succeeded(item.destinationId)
            self._ended(item, DELIVERED, began)
            if recovered:
                self._circuit(item, None)
            _log.info("delivered run {runId} to {destination} as {name} ({method})",
                      runId=item.runId, destination=item.destination, name=item.name,
                      method=item.method, scheduleId=item.scheduleId)
        except ItemMoved:
            return
        except CancelledError:
            raise
        except BackupRemoteError as error:
            await self._failed(item, destination, error, began, _recorded(item, journal))
        except Exception as error:
            _log.failure("delivery {id} to {destination}: unexpected error", id=item.id,
                         destination=item.destination)
            await self._failed(item, destination, BackupRemoteError(
                INTERNAL_ERROR, f"unexpected error: {error!r}"), began, _recorded(item, journal))
        finally:
            if destination is not None:
                try:
                    await destination.close()
                except Exception:
                    pass

    async def _verify(self, destination: IDestination, item: QueueItem) -> QueueItem:
        upload = item.upload
        assert upload is not None
        try:
            found = await destination.readBack(upload.temporaryName)
        except BackupRemoteError as error:
            if error.code != DESTINATION_NOT_FOUND:
                raise
            # gone: completed before the process ended, or removed
            found = await destination.readBack(upload.name)
            checkReadBack(destination, upload, found)
        else:
            try:
                checkReadBack(destination, upload, found)
            except BackupRemoteError:
                await discard(destination, upload)
                await self._checkSource(item)
                raise
            await destination.complete(upload)
        return await self.deliveries.move(
            item, DELIVERED, method=found.method, verifiedAt=self._now(), errorCode=None,
            reason=None, nextAttemptAt=None)

    async def _checkSource(self, item: QueueItem) -> None:
        """
        After a read-back that differs from the artifact: raise
        C{VERIFICATION_FAILED} if the local file no longer is the artifact
        (the put was handed its SHA-256, not the file's).
        """
        try:
            found = await self._runInThread(localDigest, FilePath(item.source))
        except (BackupRemoteError, OSError):
            return  # unreadable: the read-back's error stands, the next attempt says more
        if (found.size, found.sha256) != (item.size, item.sha256):
            raise BackupRemoteError(VERIFICATION_FAILED, (
                f"the local file {item.source} has {found.size} bytes and SHA-256 "
                f"{found.sha256}, not the artifact's {item.size} bytes and {item.sha256}: "
                "it changed after its download"))

    def _ended(self, item: QueueItem, outcome: str, began: float) -> None:
        if self._metrics is not None:
            self._metrics.deliveryEnded(item.destination, outcome,
                                        max(0.0, self._seconds() - began))

    def _circuit(self, item: QueueItem, error: BackupRemoteError | None) -> None:
        """Tell that C{item}'s destination's breaker opened (with C{error}), or closed."""
        if error is not None:
            _log.warn("destination {destination}: circuit breaker open after {count} failures "
                      "in a row; next attempt in {delay} s: {errorCode}: {reason}",
                      destination=item.destination, count=self.breakers.threshold,
                      delay=self.breakers.delay, errorCode=error.code, reason=error.message)
        else:
            _log.info("destination {destination}: circuit breaker closed (a delivery "
                      "succeeded)", destination=item.destination)
        if self._metrics is not None:
            self._metrics.circuit(item.destination, error is not None)
        if self._notify is not None:
            self._notify(DestinationCircuitClosed(item.destination) if error is None else
                         DestinationCircuitOpened(item.destination, error.code, error.message))

    async def _failed(self, item: QueueItem, destination: IDestination | None,
                      error: BackupRemoteError, began: float,
                      recorded: UploadState | None = None) -> None:
        if item.state == VERIFYING and item.upload is not None and destination is not None:
            await discard(destination, item.upload)
        licensing = error.code.startswith("LICENSE_")
        opened = False
        if not licensing and error.code not in (CONFIG_INVALID, NOT_FOUND):
            wasOpen = self.breakers.isOpen(item.destinationId)
            opened = self.breakers.failed(item.destinationId, self._seconds())
            if opened and not wasOpen:
                self._circuit(item, error)
        reason = f"{error.code}: {error.message}"
        # an attempt that stopped before its upload began counts all the same
        attempts = item.attempts + 1 if item.state in WAITING else item.attempts
        if _isPermanent(error) or attempts >= self.policy.maxAttempts:
            if not _isPermanent(error):
                reason += f" (gave up after {attempts} attempts)"
            if recorded is not None and destination is not None:
                # the unfinished upload kept for the next attempt: there is none
                await discard(destination, recorded)
            await self.deliveries.move(item, FAILED, expected=(item.state,),
                                       attempts=attempts, upload=None, resume=None,
                                       errorCode=error.code, reason=reason, nextAttemptAt=None)
            self._ended(item, FAILED, began)
            _log.error("delivery of run {runId} to {destination} failed: {reason}",
                       runId=item.runId, destination=item.destination, reason=reason,
                       errorCode=error.code, scheduleId=item.scheduleId)
            return
        delay = self._backoff.delay(attempts)
        if opened:
            reopens = self.breakers.reopensAt(item.destinationId)
            assert reopens is not None
            delay = max(delay, reopens - self._seconds())
            reason += " (circuit breaker open: the destination failed " \
                      f"{self.breakers.threshold} times in a row)"
        at = self._now() + timedelta(seconds=delay)
        await self.deliveries.move(item, RETRYING, expected=(item.state,), attempts=attempts,
                                   upload=None, errorCode=error.code, reason=reason,
                                   nextAttemptAt=at)
        self._ended(item, RETRYING, began)
        _log.warn("delivery of run {runId} to {destination} failed, next attempt at {at}: "
                  "{reason}", runId=item.runId, destination=item.destination,
                  at=at.isoformat(), reason=reason, scheduleId=item.scheduleId)
