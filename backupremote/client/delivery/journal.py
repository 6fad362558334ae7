"""
The upload journal of one delivery, in the client's store: what lets the
next attempt (after a failure, a stop or a crash) take an S3 multipart
upload up again instead of sending every byte anew.

    journal = await DeliveryJournal.of(deliveries, item)
    upload = await destination.put(source, item.name, progress, journal)

The upload's id and temporary name are recorded when it begins (the item's
C{resume}), each part once the server confirmed it (a row of
C{delivery_parts}), each in its own transaction: a part is never recorded
before the server answered for it, and one the server holds but that was
not recorded yet is simply sent again.
"""

from __future__ import annotations

from attrs import evolve
from twisted.internet.defer import Deferred
from zope.interface import implementer

from backupremote.client.delivery.model import QueueItem
from backupremote.client.delivery.store import DeliveryStore
from backupremote.client.destinations.interface import IUploadJournal, UploadedPart, UploadState


@implementer(IUploadJournal)
class DeliveryJournal:
    """The L{IUploadJournal} of one delivery (its item must be C{uploading})."""

    def __init__(self, deliveries: DeliveryStore, item: QueueItem,
                 state: UploadState | None) -> None:
        self._deliveries = deliveries
        self._id = item.id
        self.state = state

    @classmethod
    async def of(cls, deliveries: DeliveryStore, item: QueueItem) -> DeliveryJournal:
        """The journal of C{item}, with the upload (and parts) recorded so far."""
        return cls(deliveries, item, await deliveries.uploadState(item.id))

    def begin(self, state: UploadState) -> Deferred[None]:
        def recorded(result: None) -> None:
            self.state = state

        return self._deliveries.beginUpload(self._id, state).addCallback(recorded)

    def confirmed(self, uploadId: str, part: UploadedPart) -> Deferred[None]:
        def recorded(result: None) -> None:
            state = self.state
            if state is not None and state.uploadId == uploadId:
                parts = {p.number: p for p in state.parts}
                parts[part.number] = part
                self.state = evolve(state, parts=tuple(parts[n] for n in sorted(parts)))

        return self._deliveries.partConfirmed(self._id, uploadId, part).addCallback(recorded)
