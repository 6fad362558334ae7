"""
Which events a channel is told: the kinds in its C{on = [...]}, and for a
schedule that has its own list (C{[notify.email.schedules]}), that list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from attrs import field, frozen

from backupremote.client.notify.defaults import DEFAULT_KINDS, KINDS

if TYPE_CHECKING:
    from backupremote.client.notify.events import Event


def _kinds(values: Iterable[str]) -> frozenset[str]:
    kinds = frozenset(values)
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"unknown event kind(s) {', '.join(unknown)}; "
                         f"choose from {', '.join(KINDS)}")
    return kinds


def _perSchedule(values: Mapping[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return {str(key): _kinds(kinds) for key, kinds in values.items()}


@frozen
class Rules:
    """
    @ivar on: the kinds told for every schedule, and for events of no
        schedule (a destination, a server, a licence).
    @ivar schedules: a schedule's name or id -> the kinds told for that
        schedule's events instead of C{on} (an empty list: none).
    """

    on: frozenset[str] = field(default=frozenset(DEFAULT_KINDS), converter=_kinds)
    schedules: Mapping[str, frozenset[str]] = field(factory=dict, converter=_perSchedule)

    def matches(self, event: Event) -> bool:
        # imported here: client.toml's parser makes Rules, and needs no event class
        from backupremote.client.notify.events import scheduleOf

        scheduleId, scheduleName = scheduleOf(event)
        for key in (scheduleId, scheduleName):
            if key is not None and key in self.schedules:
                return event.KIND in self.schedules[key]
        return event.KIND in self.on
