"""
The licence's expiry as a server grants it at login (the ``auth`` answer's
C{licenseExpiresAt}), said one way wherever it is shown: ``capabilities``,
``status``, ``check``, the client daemon's start-up line and its licence
watch (L{backupremote.client.notify.license}). Light on purpose: a remote
command imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
DAY = timedelta(days=1)


def daysLeft(expiresAt: datetime, now: datetime) -> int:
    """Days left, a part of a day counted as one; 0 once (and only once) expired."""
    return max(0, math.ceil((expiresAt - now) / DAY))


def expiryOf(session: Mapping[str, Any]) -> datetime | None:
    """The expiry in an ``auth`` answer (C{None}: the server sent none)."""
    text = session.get("licenseExpiresAt")
    if not text:
        return None
    return datetime.fromisoformat(str(text).replace("Z", "+00:00")).astimezone(UTC)


def describeExpiry(expiresAt: datetime | None, now: datetime) -> str:
    """C{expires 2027-02-27 09:12 UTC (90 days left)}, for people."""
    if expiresAt is None:
        return "no expiry given by the server"
    when = f"{expiresAt.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if expiresAt <= now:
        return f"EXPIRED {when}"
    left = daysLeft(expiresAt, now)
    return f"expires {when} ({left} day{'' if left == 1 else 's'} left)"


def expiryJSON(expiresAt: datetime | None, now: datetime) -> dict[str, Any]:
    """C{licenseExpiresAt} (ISO 8601, C{Z}) and C{licenseDaysLeft}, for scripts."""
    if expiresAt is None:
        return {"licenseExpiresAt": None, "licenseDaysLeft": None}
    return {"licenseExpiresAt": expiresAt.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "licenseDaysLeft": daysLeft(expiresAt, now)}
