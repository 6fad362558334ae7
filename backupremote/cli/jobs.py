"""
The CLI's side of the job runner: commands that move a run (``run``,
``download``, ``demo``) drive a L{JobRunner} over the client folder's store,
as the daemon does; here is only what they show.
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from backupremote.cli.clientconfig import commandConfig
from backupremote.cli.output import Output
from backupremote.cli.progress import ProgressView, UploadView
from backupremote.client.api import BackupRemoteClient
from backupremote.client.delivery import licensesOf
from backupremote.client.download import DownloadProgress
from backupremote.client.jobs import (
    CANCELLED,
    FAILED,
    Job,
    JobObserver,
    JobRequest,
    JobRunner,
    jobRunnerIn,
    now,
)
from backupremote.client.jobs.model import UploadProgress
from backupremote.client.servers import ClientServers
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.errors import CONFLICT, BackupRemoteError
from backupremote.protocol.runs import RunEvent
from backupremote.protocol.structured import converter

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore
    from backupremote.reactors import IClientReactor

JobCommand = Callable[[BackupRemoteClient, JobRunner, argparse.Namespace, Output, "IReactorCore"],
                      Awaitable[int]]


def withJobs(command: JobCommand) -> Callable[..., Awaitable[int]]:
    """
    Run C{command} with a client of the server C{--server} picks (this
    command owns its connections; C{args.serverName} names it) and a job
    runner over the client folder's store (shared with the daemon: a job
    one of them drives, the other leaves alone), and the reactor (to hear
    of its shutdown: L{driveJob}).
    """

    async def run(reactor: IClientReactor, args: argparse.Namespace, output: Output) -> int:
        config = commandConfig(args)
        assert config.dataDir is not None  # a loaded config always has one
        servers = ClientServers(reactor, config, ownConnections=True)
        args.serverName = config.pickServer(getattr(args, "server", None))
        client = servers(args.serverName)
        store = SQLiteClientStore.inFolder(config.dataDir, reactor)
        try:
            runner = jobRunnerIn(reactor, config.dataDir, store, servers,
                                 licenses=licensesOf(config, now(reactor)),
                                 policy=config.delivery)
            return await command(client, runner, args, output, reactor)
        finally:
            await servers.close()
            await store.close()

    return run


async def driveJob(reactor: IReactorCore, runner: JobRunner, request: JobRequest,
                   output: Output, interrupted: Callable[[], Any]) -> Job:
    """
    Drive C{request} to its goal, shown on C{output}; on Ctrl-C (the
    C{reactor}'s shutdown) C{interrupted} says how to resume it, or cancels it.
    """
    trigger = reactor.addSystemEventTrigger("before", "shutdown", interrupted)
    try:
        return await runner.start(request, JobView(output))
    finally:
        try:
            reactor.removeSystemEventTrigger(trigger)
        except ValueError:
            pass  # it already ran: the reactor is shutting down


class JobView(JobObserver):
    """
    Live progress of a job on the terminal (the run on the server, the
    download, the upload to each destination); nothing with C{--quiet}; with
    C{--json} in lines mode (C{run --wait}), each run event, download and
    upload progress as a JSON line (C{"type": "runEvent"},
    C{"downloadProgress"} or C{"uploadProgress"}).
    """

    def __init__(self, output: Output) -> None:
        from backupremote.cli.transfers import DownloadView  # it drives jobs too

        interactive = output.out.isatty()
        self._output = output
        shown = output.showsProgress
        self._run = ProgressView(output.out, interactive) if shown else None
        self._download = DownloadView(output.out, interactive) if shown else None
        self._upload = UploadView(output.out, interactive) if shown else None

    def runEvent(self, event: RunEvent) -> None:
        if self._run is not None:
            self._run(event)
        elif self._output.asJSON and self._output.jsonLines:
            self._output.jsonLine({"type": "runEvent"} | converter.unstructure(event))

    def downloadProgress(self, progress: DownloadProgress) -> None:
        if self._download is not None:
            self._download(progress)
        elif self._output.asJSON and self._output.jsonLines:
            self._output.jsonLine({"type": "downloadProgress"}
                                  | converter.unstructure(progress))

    def uploadProgress(self, progress: UploadProgress) -> None:
        if self._upload is not None:
            self._upload(progress)
        elif self._output.asJSON and self._output.jsonLines:
            self._output.jsonLine({"type": "uploadProgress"} | converter.unstructure(progress))


def folderPath(folder: str) -> str:
    """The absolute path the job records for a folder given on the command line."""
    return os.path.abspath(folder)


def raiseIfStopped(job: Job) -> None:
    """A job that failed at a step of this client's: its error, as the command's."""
    if job.state in (FAILED, CANCELLED):
        raise BackupRemoteError(job.errorCode or CONFLICT, job.errorMessage or (
            f"run {job.runId} ended {job.state}"))


def fetched(job: Job) -> dict[str, Any]:
    """What ``download`` (and ``run --download``) report of a downloaded job."""
    assert job.artifact is not None and job.artifactPath is not None
    return {"runId": job.runId, "path": job.artifactPath, "sizeBytes": job.artifact.sizeBytes,
            "sha256": job.artifact.sha256, "released": job.state == "released"}


def commandLine(args: argparse.Namespace, *words: str) -> str:
    """C{backupremote --config THE_SAME WORDS...}, quoted for a shell: a hint to copy."""
    config = ["--config", args.config] if getattr(args, "config", None) else []
    return shlex.join(["backupremote", *config, *words])


def resumeCommand(args: argparse.Namespace, runId: str, folder: str, release: bool) -> str:
    """The command that takes an interrupted download of C{runId} up again."""
    return commandLine(args, "download", runId, folder, *(["--release"] if release else []))
