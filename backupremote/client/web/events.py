"""
The dashboard's live view: what the job runner's drives tell, kept and
passed on to every open page by server-sent events.

L{LiveEvents.watcher} is added to the runner's C{watchers}, so every job
the daemon drives (the scheduler's, a "run now", a resumed one) reports
here through the same L{JobObserver} calls the CLI's progress view gets:
the server's run events, the download's progress, each recorded step.
Nothing reads the store on a timer: a page reads it when it is loaded, and
the browser loads a part of it again only when an event says a job moved.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from attrs import frozen
from twisted.logger import Logger

from backupremote.client.download import DownloadProgress
from backupremote.client.jobs import Job, JobObserver
from backupremote.protocol.runs import RunEvent

_log = Logger(namespace="backupremote.client.web")

Listener = Callable[[str, dict[str, Any]], None]


@frozen
class LiveProgress:
    """Where an active run is, as last told: the server's stage, or the client's step."""

    runId: str
    #: the job's state (pending, running, completed, downloaded, ...)
    state: str
    #: the server's stage while it runs (dump, compression, ...), or the
    #: client's step after it (download, verify, deliver, release)
    stage: str
    bytesDone: int = 0
    total: int | None = None
    rate: float | None = None
    message: str = ""

    @property
    def percent(self) -> int | None:
        if not self.total:
            return None
        return max(0, min(100, int(100 * self.bytesDone / self.total)))

    def asJSON(self) -> dict[str, Any]:
        return {"runId": self.runId, "state": self.state, "stage": self.stage,
                "bytesDone": self.bytesDone, "total": self.total, "rate": self.rate,
                "percent": self.percent, "message": self.message}


class LiveEvents:
    """The latest progress of each run driven now, and who listens for more."""

    def __init__(self) -> None:
        self.progress: dict[str, LiveProgress] = {}
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call C{listener(kind, data)} with each event; returns how to stop."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, data)
            except Exception:
                _log.failure("a dashboard listener failed on {kind}", kind=kind)

    def watcher(self, runId: str) -> JobObserver:
        """One more observer of C{runId}'s drive (for C{JobRunner.watchers})."""
        return _RunWatcher(self, runId)

    # What the watchers report

    def _update(self, progress: LiveProgress) -> None:
        self.progress[progress.runId] = progress
        self.publish("progress", progress.asJSON())

    def _moved(self, job: Job) -> None:
        if job.finished:
            self.progress.pop(job.runId, None)
        else:
            last = self.progress.get(job.runId)
            self.progress[job.runId] = LiveProgress(
                job.runId, job.state, job.nextStep or job.state,
                last.bytesDone if last and last.stage == job.nextStep else 0)
        self.publish("job", {"runId": job.runId, "state": job.state,
                             "finished": job.finished, "scheduleId": job.scheduleId,
                             "at": datetime.now(timezone.utc).isoformat()})


class _RunWatcher(JobObserver):
    def __init__(self, live: LiveEvents, runId: str) -> None:
        self._live = live
        self._runId = runId
        live.publish("job", {"runId": runId, "state": "driven", "finished": False})

    def runEvent(self, event: RunEvent) -> None:
        if event.kind != "progress":
            return  # the end of the run arrives as the step it ends
        self._live._update(LiveProgress(self._runId, "running", event.stage, event.bytes,
                                        event.totalEstimate, event.rate, event.message))

    def downloadProgress(self, progress: DownloadProgress) -> None:
        self._live._update(LiveProgress(
            self._runId, "completed", "download" if progress.phase == "downloading"
            else f"download ({progress.phase})", progress.bytesDone, progress.sizeBytes,
            progress.rate))

    def stepDone(self, job: Job) -> None:
        self._live._moved(job)


def serverSentEvent(kind: str, data: dict[str, Any]) -> bytes:
    """One event of a C{text/event-stream}."""
    return f"event: {kind}\ndata: {json.dumps(data, sort_keys=True)}\n\n".encode("utf-8")
