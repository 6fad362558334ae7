"""
The database configurations a run is using now, which may not be deleted.

The run queue knows which runs are queued or executing; deleting a
configuration must refuse while one of them uses it. The service makes one
L{BusyConfigs}, the run queue keeps it (L{BusyConfigs.using}) and the
configurations ask it (L{BusyConfigs.isBusy}): the one dependency between
the two, named, instead of a set both sides share under two names.
"""

from __future__ import annotations

from collections.abc import Iterable


class BusyConfigs:
    """The ids of the configurations with a run queued or executing."""

    def __init__(self) -> None:
        self._ids: frozenset[str] = frozenset()

    def using(self, configIds: Iterable[str]) -> None:
        """The run queue's word: these configurations (and no other) have a run now."""
        self._ids = frozenset(configIds)

    def isBusy(self, configId: str) -> bool:
        """Whether a run queued or executing uses C{configId}."""
        return configId in self._ids
