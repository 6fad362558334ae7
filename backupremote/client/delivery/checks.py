"""
The hook that schedule creation and update call: every destination a
schedule names exists, and its server's licence allows the destination's
type (C{destination.<type>}): refused otherwise, with C{NOT_FOUND} or the
licence's own code, before anything is stored.
"""

from __future__ import annotations

from attrs import evolve

from backupremote.client.delivery.queue import Licenses
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.schedules.model import Schedule


async def checkScheduleDestinations(registry: DestinationRegistry, licenses: Licenses,
                                    schedule: Schedule) -> Schedule:
    """
    C{schedule} with each destination named by its name (an id given is
    turned into the name), once each is found and licensed.

    @raise BackupRemoteError: C{NOT_FOUND} (with C{details.didYouMean}), or a
        C{LICENSE_*} code naming the missing feature.
    """
    names = []
    for nameOrId in schedule.destinations:
        stored = await registry.byName(nameOrId)
        licenses(schedule.server).check(stored.type)
        names.append(stored.name)
    return evolve(schedule, destinations=tuple(names))
