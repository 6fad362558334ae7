"""
The scheduler's L{JobStarter} over the job runner: a schedule's run becomes
a job, driven to its end (C{released}) by the one
L{backupremote.client.jobs.JobRunner}.

    starter = RunnerStarter(runner, registry.references)
    scheduler = Scheduler(ScheduleStore(store), starter, reactor)

Schedules name their destinations; L{destinationsFor} is the one place
where those names become what a job delivers to: by default the client's
named destinations (L{DestinationRegistry.references}, C{backupremote dest
add}); an embedding application or a test may pass its own lookup (local
folders by name, say).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from twisted.internet.defer import Deferred

from backupremote.client.jobs import Job, JobRequest, JobRunner
from backupremote.client.jobs.model import Destination
from backupremote.client.schedules.scheduler import RunRequest

#: Destination names (or ids) -> what a job delivers to, in order; fails
#: with C{NOT_FOUND} for a name the client does not know.
DestinationNames = Callable[[Sequence[str]], Awaitable[tuple[Destination, ...]]]


async def destinationsFor(names: Sequence[str], lookup: DestinationNames
                          ) -> tuple[Destination, ...]:
    """The one place where a run's destination names become deliveries."""
    if not names:
        return ()
    return tuple(await lookup(tuple(names)))


async def jobRequest(request: RunRequest, lookup: DestinationNames,
                     goal: str = "released") -> JobRequest:
    """The job of a schedule's run: commanded, downloaded, verified, delivered, released."""
    return JobRequest(
        runId=request.runId, databaseConfigId=request.databaseConfigId,
        options=request.options, scheduleId=request.scheduleId, fireTime=request.fireTime,
        server=request.server, goal=goal,
        destinations=await destinationsFor(request.destinations, lookup))


class RunnerStarter:
    """The scheduler's L{JobStarter}: C{start} submits a job, C{busySchedules} asks the runner."""

    def __init__(self, runner: JobRunner, lookup: DestinationNames) -> None:
        self._runner = runner
        self._lookup = lookup

    def start(self, request: RunRequest) -> Deferred[Job]:
        """Fires once the job is recorded (its drive goes on in the runner)."""

        async def start() -> Job:
            return await self._runner.submit(await jobRequest(request, self._lookup))

        return Deferred.fromCoroutine(start())

    def busySchedules(self) -> Deferred[set[str]]:
        return self._runner.busySchedules()
