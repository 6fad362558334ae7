"""
The run id of a schedule's slot: the same slot always gets the same runId.

A retry after a reconnect, a client restart, or a second daemon firing the
same slot sends the same runId, and the server's idempotency per runId does
the rest: one slot never starts two backups.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

#: Fixed forever: changing it would give every past slot a new run id.
#: (It is uuid5(NAMESPACE_URL, "backupremote:schedule-slot").)
SLOT_NAMESPACE = uuid.UUID("9e5d71f2-6c26-51f9-a832-1a860b0ef322")


def slotRunId(scheduleId: str, fireTime: datetime) -> str:
    """C{uuid5(SLOT_NAMESPACE, "scheduleId:fireTimeUTC")}, fireTime in ISO 8601."""
    if fireTime.tzinfo is None:
        raise ValueError("fireTime must be an aware datetime")
    utc = fireTime.astimezone(timezone.utc)
    return str(uuid.uuid5(SLOT_NAMESPACE, f"{scheduleId}:{utc.isoformat()}"))
