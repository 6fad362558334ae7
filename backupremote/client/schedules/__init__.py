"""
The client's schedules: the only source of truth for when backups run.

L{model} says what a schedule is, L{validation} checks one before it is
stored, L{nextfire} is the pure function from a schedule and an instant to
its next fire, and L{runids} names each slot's run.
"""

from backupremote.client.schedules.model import (
    Cron,
    Daily,
    Interval,
    Monthly,
    Rule,
    Schedule,
    Weekly,
)
from backupremote.client.schedules.nextfire import nextFire
from backupremote.client.schedules.runids import slotRunId
from backupremote.client.schedules.validation import validateSchedule

__all__ = [
    "Cron",
    "Daily",
    "Interval",
    "Monthly",
    "Rule",
    "Schedule",
    "Weekly",
    "nextFire",
    "slotRunId",
    "validateSchedule",
]
