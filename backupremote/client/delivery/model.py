"""
What the delivery queue holds: one L{QueueItem} per run and named
destination (the L{DeliveryPolicy} it follows is in
L{backupremote.client.delivery.policy}).

    pending -> uploading -> verifying -> delivered
       ^          |             |
       +-- retrying <-----------+        (next attempt at, reason)
                  |
                failed                   (reason: attempts used up, or a
                                          refusal another try cannot mend)

Each arrow is one transaction (L{backupremote.client.delivery.store}).
"""

from __future__ import annotations

from datetime import datetime

from attrs import frozen

from backupremote.client.destinations.interface import PendingUpload, UploadState
from backupremote.client.jobs.model import Receipt

PENDING = "pending"
UPLOADING = "uploading"
VERIFYING = "verifying"
DELIVERED = "delivered"
RETRYING = "retrying"
FAILED = "failed"
#: Every state, in the order C{backupremote queue} lists them.
STATES = (UPLOADING, VERIFYING, PENDING, RETRYING, FAILED, DELIVERED)
#: An item in one of these has nothing more to do.
SETTLED = (DELIVERED, FAILED)
#: An item in one of these waits for its turn (its C{nextAttemptAt}).
WAITING = (PENDING, RETRYING)


@frozen
class QueueItem:
    """
    One delivery of one run's artifact to one named destination.

    @ivar server: the run's server (whose licence allows the destination's type).
    @ivar destination: the destination's name when it was queued.
    @ivar name: the file's name at the destination (C{YYYY-MM-DD/FILE}).
    @ivar source: the local artifact (only read).
    @ivar size: @ivar sha256: what the artifact is (the server's manifest,
        checked on download); the copy read back must be the same.
    @ivar attempts: attempts started so far.
    @ivar upload: the temporary file of the attempt in progress, once put.
    @ivar resume: the unfinished upload an attempt began (an S3 multipart
        upload), which the next attempt takes up again: kept when an attempt
        fails or the process ends, dropped once put or failed for good. Its
        parts are not here (see L{backupremote.client.delivery.journal}).
    @ivar reason: why it waits or failed (C{CODE: message}), for people.
    @ivar method: @ivar verifiedAt: how and when the delivered copy was
        checked (its receipt).
    @ivar prunedAt: when retention removed the delivered copy.
    """

    id: str
    runId: str
    server: str
    destinationId: str
    destination: str
    scheduleId: str | None
    name: str
    source: str
    size: int
    sha256: str
    state: str
    attempts: int
    createdAt: datetime
    updatedAt: datetime
    upload: PendingUpload | None = None
    errorCode: str | None = None
    reason: str | None = None
    nextAttemptAt: datetime | None = None
    method: str | None = None
    verifiedAt: datetime | None = None
    prunedAt: datetime | None = None
    resume: UploadState | None = None

    @property
    def settled(self) -> bool:
        return self.state in SETTLED

    def receipt(self) -> Receipt:
        """The receipt of a delivered item."""
        assert self.state == DELIVERED and self.method and self.verifiedAt
        return Receipt(self.destination, self.name, self.size, self.sha256, self.method,
                       self.verifiedAt)

