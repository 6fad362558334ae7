"""A run that is queued or executing: its status and what only memory holds."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.defer import Deferred

from backupremote.outcome import Outcome
from backupremote.protocol.runs import RunStatus
from backupremote.server.runs.events import RunEventStream
from backupremote.server.runs.runlog import RunLog


@define(eq=False)
class ActiveRun:
    """A run that is queued or executing, with what only memory holds."""

    status: RunStatus
    events: RunEventStream
    log: RunLog
    #: the connections its events are pushed to
    subscribers: set[Any] = field(factory=set)
    #: the step in progress (the pipeline or the post-script), cancellable
    work: Deferred[Any] | None = None
    task: Deferred[None] | None = None
    serverVersion: str | None = None
    cancelRequested: bool = False
    #: fires once the run's record is on the disk: its pipeline starts after
    #: that, so that the admission's answer leaves first (None: it is)
    recorded: Outcome[None] | None = None
