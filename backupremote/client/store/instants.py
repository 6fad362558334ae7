"""
Instants as the client's store keeps them: UTC, fixed-width ISO 8601 with
microseconds and a C{Z}, so that text order is time order in SQL (C{ORDER
BY}, C{<} in a C{WHERE}) for every table of every area.
"""

from __future__ import annotations

from datetime import datetime, timezone


def storedInstant(value: datetime | None) -> str | None:
    """C{value} as stored (C{None} stays C{None})."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def instantOf(text: str | None) -> datetime | None:
    """The instant C{text} stores (C{None} stays C{None})."""
    return None if text is None else datetime.fromisoformat(text.replace("Z", "+00:00"))
