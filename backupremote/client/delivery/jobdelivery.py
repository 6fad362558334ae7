"""
The job runner's deliver step through the delivery queue (L{IDelivery}).

A job's local folders (C{LocalFolder}, the demo's and C{run}'s own copy)
are copied as before by L{LocalFolderDelivery}; its named destinations go
through the queue, and the step waits until each is delivered or failed.
Only then does the job move on to release the server's staging: the
staging is released once every destination of the run is delivered. A
failed item fails the step with its own code (a licence's included), and
the item's reason; C{queue retry ID} and a new start of the job try again.
"""

from __future__ import annotations

from collections.abc import Callable

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.python.filepath import FilePath
from zope.interface import implementer

from backupremote.client.delivery.model import FAILED
from backupremote.client.delivery.queue import DeliveryQueue
from backupremote.client.jobs.delivery import DeliveryFailed, IDelivery
from backupremote.client.jobs.model import (
    Job,
    LocalFolder,
    NamedDestination,
    Receipt,
    UploadProgress,
)


@implementer(IDelivery)
class QueueDelivery:
    """Local folders by copy, named destinations by the queue."""

    def __init__(self, queue: DeliveryQueue, local: IDelivery) -> None:
        self.queue = queue
        self._local = local

    def stop(self) -> Deferred[None]:
        return self.queue.stop()

    def deliver(self, job: Job, artifact: FilePath,
                progress: Callable[[UploadProgress], None] | None = None
                ) -> Deferred[list[Receipt]]:
        async def deliver() -> list[Receipt]:
            folders = tuple(d for d in job.destinations if isinstance(d, LocalFolder))
            named = [d for d in job.destinations if isinstance(d, NamedDestination)]
            receipts: list[Receipt] = []
            if folders:
                receipts += await self._local.deliver(evolve(job, destinations=folders),
                                                      artifact)
            if named:
                await self.queue.started()
                unwatch = self.queue.watch(job.runId, progress) if progress else None
                try:
                    await self.queue.enqueue(job, artifact, named)
                    items = await self.queue.whenSettled(job.runId)
                finally:
                    if unwatch is not None:
                        unwatch()
                failed = [item for item in items if item.state == FAILED]
                if failed:
                    first = failed[0]
                    raise DeliveryFailed(first.errorCode or "INTERNAL_ERROR", "; ".join(
                        f"delivery to {item.destination} failed: {item.reason}"
                        for item in failed), hint=(
                        f"Mend the cause, then `backupremote queue retry {first.id}` (or "
                        "start the run again); `backupremote queue` lists the deliveries."),
                        details={"deliveries": [item.id for item in failed]})
                receipts += [item.receipt() for item in items]
            return receipts

        return Deferred.fromCoroutine(deliver())

