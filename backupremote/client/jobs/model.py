"""
What a job is: the states of one run on its way from a command to its
destinations, the request that starts one, and the receipts it keeps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Union

from attrs import field, frozen

from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import RunStatus
from backupremote.protocol.transfers import FileEntry

#: The states of a job, in order; each step moves a job one state on, in one
#: transaction: execute (pending -> running), follow (-> completed),
#: download (-> downloaded), verify (-> verified), deliver (-> delivered),
#: release (-> released).
STATES = ("pending", "running", "completed", "downloaded", "verified", "delivered", "released")
#: The run failed (on the server, or a step on this client could not be done).
FAILED = "failed"
#: The run was cancelled on the server.
CANCELLED = "cancelled"
#: Where a job may stop: commanded only (a CLI ``run`` without ``--wait``),
#: followed to its end, downloaded and delivered, or all that and released.
GOALS = ("running", "completed", "delivered", "released")
#: The step that moves a job out of each state.
STEPS = {"pending": "execute", "running": "follow", "completed": "download",
         "downloaded": "verify", "verified": "deliver", "delivered": "release"}
#: Steps done on this client: a job failed at one of them may be tried again
#: (from the state before it: a verify failure downloads anew).
RETRYABLE = {"download": "completed", "verify": "completed", "deliver": "verified",
             "release": "delivered"}


def reached(state: str, goal: str) -> bool:
    """Whether a job in C{state} has got as far as C{goal}."""
    return state in STATES and STATES.index(state) >= STATES.index(goal)


@frozen
class LocalFolder:
    """A folder on this machine to deliver artifacts to (issue 12 adds the other kinds)."""

    path: str
    type: str = "local"

    @property
    def name(self) -> str:
        """How receipts and messages name it."""
        return f"file://{self.path}"


@frozen
class NamedDestination:
    """
    A destination of the client's store (``backupremote dest add``), by its
    id: delivered through the delivery queue (L{backupremote.client.delivery}).
    L{backupremote.client.destinations.registry.DestinationRegistry.references}
    makes them from names.

    @ivar name: its name when the job was asked for (receipts and messages).
    """

    id: str
    name: str
    type: str


#: What a job delivers to.
Destination = Union[LocalFolder, NamedDestination]


@frozen
class Receipt:
    """One delivered copy: where, under which name, and what it was checked to be."""

    destination: str
    name: str
    size: int
    sha256: str
    method: str
    verifiedAt: datetime


@frozen
class JobRequest:
    """
    What to do for one run. C{runId} names it for good: a second request
    with the same id continues the same job (the server never starts a
    second backup for it).

    @ivar databaseConfigId: the configuration to back up; C{None} follows
        (downloads, delivers) a run started elsewhere, by its id.
    @ivar downloadFolder: where the artifact is downloaded to and left
        (C{backupremote download RUNID DIR}); C{None}: the client's own
        work folder, emptied once the artifact is delivered and released.
    """

    runId: str
    databaseConfigId: str | None = None
    options: BackupOptions | None = None
    scheduleId: str | None = None
    fireTime: datetime | None = None
    server: str = "default"
    goal: str = "released"
    downloadFolder: str | None = None
    destinations: tuple[Destination, ...] = ()

    def __attrs_post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, not {self.goal!r}")


@frozen
class Job:
    """A job as stored: its request, its state, and what its steps found."""

    runId: str
    server: str
    databaseConfigId: str | None
    options: BackupOptions | None
    scheduleId: str | None
    fireTime: datetime | None
    goal: str
    state: str
    downloadFolder: str | None
    #: whether the downloaded file stays where it is once delivered
    keepDownload: bool
    destinations: tuple[Destination, ...]
    createdAt: datetime
    updatedAt: datetime
    #: the server's last word on the run
    status: RunStatus | None = None
    #: the manifest entry of the artifact (once completed)
    artifact: FileEntry | None = None
    #: the downloaded file (once downloaded)
    artifactPath: str | None = None
    failedStep: str | None = None
    errorCode: str | None = None
    errorMessage: str | None = None
    receipts: tuple[Receipt, ...] = field(default=())

    @property
    def finished(self) -> bool:
        """Nothing more to do: the goal is reached, or the job failed or was cancelled."""
        return self.state in (FAILED, CANCELLED) or reached(self.state, self.goal)

    @property
    def succeeded(self) -> bool:
        return self.state not in (FAILED, CANCELLED) and reached(self.state, self.goal)

    @property
    def nextStep(self) -> str | None:
        return None if self.finished else STEPS[self.state]


@frozen
class UploadProgress:
    """
    How far the upload of one delivery is (what C{run --wait} draws per
    destination). Told when an attempt starts (C{bytesSent} 0), then every
    1 MiB or 1/200 of the file, whichever is more, and when all is sent.
    """

    runId: str
    deliveryId: str
    destination: str
    name: str
    bytesSent: int
    sizeBytes: int
    attempt: int
