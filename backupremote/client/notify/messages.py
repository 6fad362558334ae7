"""
What a channel sends: one L{Notification} for one event or a digest of
several, with a subject, a plain text and a JSON payload made from the
events by cattrs.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from attrs import field, frozen

from backupremote.client.notify.events import Event, isRecovery
from backupremote.protocol.errors import lookup
from backupremote.protocol.structured import makeConverter

#: The payload's format; a receiver should check it.
PAYLOAD_VERSION = 1
PREFIX = "[backupremote]"

_converter = makeConverter(forbidExtraKeys=True)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@frozen
class Notification:
    """
    One message: C{events} in the order they happened, C{omitted} more that
    a full digest left out, made at C{createdAt}. C{id} names it for
    receivers (the same on every retry, so a receiver can drop a repeat).
    """

    events: tuple[Event, ...] = field(converter=tuple)
    createdAt: datetime
    omitted: int = 0
    id: str = field(factory=lambda: str(uuid.uuid4()))

    @property
    def subject(self) -> str:
        """One line, without control characters (a mail header, a chat title)."""
        if len(self.events) == 1 and not self.omitted:
            text = self.events[0].summary()
        else:
            count = len(self.events) + self.omitted
            kinds = Counter(_word(e) for e in self.events)
            text = f"{count} notifications: " + ", ".join(
                f"{n} {kind}" for kind, n in kinds.most_common())
        return _CONTROL.sub(" ", f"{PREFIX} {text}")

    @property
    def text(self) -> str:
        """The plain text: one paragraph per event."""
        paragraphs = [_withAction(e.details(), actionOf(e)) for e in self.events]
        if self.omitted:
            paragraphs.append(f"... and {self.omitted} more, left out of this digest "
                              "(see the client's log).")
        paragraphs.append(f"-- backupremote client, {_iso(self.createdAt)}")
        return "\n\n".join(paragraphs) + "\n"

    def payload(self) -> dict[str, Any]:
        """The JSON object a webhook receives."""
        return {
            "version": PAYLOAD_VERSION,
            "id": self.id,
            "createdAt": _iso(self.createdAt),
            "subject": self.subject,
            "text": self.text,
            "omitted": self.omitted,
            "events": [eventPayload(e) for e in self.events],
        }


def eventPayload(event: Event) -> dict[str, Any]:
    """
    C{{"type": "RunFailed", "kind": "failure", ...its fields}}, and for an
    event with an error code, C{"action"}: what to do, from the registry.
    """
    body = _converter.unstructure(event)
    action = actionOf(event)
    return {"type": type(event).__name__, "kind": event.KIND, **body,
            **({"action": action} if action else {})}


def actionOf(event: Event) -> str | None:
    """What to do about an event with an error code (the registry's action), else C{None}."""
    code = getattr(event, "errorCode", None)
    return lookup(code).action if code else None


def _withAction(details: str, action: str | None) -> str:
    return f"{details}\nWhat to do: {action}" if action else details


def _word(event: Event) -> str:
    if isRecovery(event):
        return "recovered"
    return {"failure": "failed", "success": "succeeded", "circuit": "failing",
            "license": "licence", "unreachable": "unreachable"}.get(event.KIND, event.KIND)


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
