"""``backupremote run``, ``status`` and ``cancel``: backups on the server."""

from __future__ import annotations

import argparse
import uuid
from typing import TYPE_CHECKING, Any

from attrs import evolve

from backupremote.cli.output import EXIT_REFUSED, Output, whatToDo
from backupremote.cli.progress import duration, size
from backupremote.cli.databases import ID_HELP, backupArguments, configIdOf
from backupremote.cli.remote import withClient, withLicenceExpiry
from backupremote.cli.jobs import (
    commandLine,
    driveJob,
    fetched,
    folderPath,
    raiseIfStopped,
    resumeCommand,
    withJobs,
)
from backupremote.cli.transfers import describeFetched
from backupremote.client.api import BackupRemoteClient
from backupremote.client.jobs import JobRequest, JobRunner
from backupremote.configfile import configError
from backupremote.protocol.errors import CONFLICT, BackupRemoteError
from backupremote.protocol.runs import RunStatus
from backupremote.protocol.structured import converter

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore

_OPTIONS = {"format": "format", "compression": "compression", "level": "level",
            "threads": "threads", "checksum": "checksum", "verification": "verification",
            "post_script": "postScript", "timeout": "timeoutSeconds"}


def register(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="command a backup of a configuration now",
        epilog="example: backupremote --config client.toml run 6f1c... --compression zstd "
        "--wait --download /backups   (Ctrl-C detaches; the backup goes on unless "
        "--cancel-on-interrupt; --download prints the saved file's path and keeps the "
        "server's copy unless --release)",
    )
    run.add_argument("id", help=ID_HELP)
    run.add_argument("--run-id", help="a runId of your own, so that a scripted retry "
                     "never starts a second backup (default: a new one)")
    run.add_argument("--wait", action="store_true", help="follow the run until it ends")
    run.add_argument("--cancel-on-interrupt", action="store_true",
                     help="with --wait, Ctrl-C cancels the backup instead of detaching")
    run.add_argument("--download", metavar="DIR",
                     help="with --wait, then fetch the artifact into DIR (verified, resumable "
                     "with `backupremote download RUNID DIR`); the server keeps its staging "
                     "unless --release")
    run.add_argument("--release", action="store_true",
                     help="with --download, release the server's staging once the file is "
                     "verified")
    backupArguments(run.add_argument_group("backup options (default: the configuration's)"))
    run.set_defaults(onReactor=withJobs(runCommand))
    status = commands.add_parser("status", help="the status of a run",
                                 epilog="example: backupremote status 0b8e...")
    status.add_argument("run_id")
    status.set_defaults(onReactor=withClient(statusCommand))
    cancel = commands.add_parser("cancel", help="cancel a queued or running backup",
                                 epilog="example: backupremote cancel 0b8e...")
    cancel.add_argument("run_id")
    cancel.set_defaults(onReactor=withClient(cancelCommand))


def describeStatus(status: RunStatus) -> str:
    lines = [f"run {status.runId}: {status.state}"
             + (f" (stage {status.stage})" if status.state == "running" else "")
             + (f", position {status.queuePosition} in the queue" if status.queuePosition else "")]
    if status.errorCode:
        lines.append(f"  error {status.errorCode}: {status.errorMessage}"
                     + whatToDo(status.errorCode, "    "))
    if status.artifact:
        a = status.artifact
        lines.append(f"  artifact: {a.name}, {size(a.sizeBytes)}, {a.checksum} {a.digest}"
                     + ("" if a.staged else " (released or expired: no longer on the server)"))
    for timing in status.stageTimings:
        if timing.endedAt is not None:
            took = (timing.endedAt - timing.startedAt).total_seconds()
            lines.append(f"  {timing.stage:<12} {duration(took)}  {size(timing.bytes)}")
    if status.scriptOutput:
        lines.append("  post-script output:\n    " + status.scriptOutput.strip().replace(
            "\n", "\n    "))
    return "\n".join(lines)


async def runCommand(client: BackupRemoteClient, runner: JobRunner,
                     args: argparse.Namespace, output: Output, reactor: IReactorCore) -> int:
    args.id = await configIdOf(client, args.id)
    changes = {field: getattr(args, name) for name, field in _OPTIONS.items()
               if getattr(args, name) is not None}
    options = None
    if changes:
        current = await client.getDatabaseConfig(args.id)
        options = evolve(current.backup, **changes)
    if (args.download or args.release) and not args.wait:
        raise configError("--download and --release need --wait")
    if args.release and not args.download:
        raise configError("--release needs --download DIR")
    runId = args.run_id or str(uuid.uuid4())
    folder = folderPath(args.download) if args.download else None
    goal = ("released" if args.release else "delivered" if args.download
            else "completed" if args.wait else "running")
    request = JobRequest(runId, args.id, options, goal=goal, downloadFolder=folder,
                         server=args.serverName)
    if not args.wait:
        known = await runner.jobs.get(runId) is not None
        status = (await runner.start(request)).status
        assert status is not None
        output.result(status, describeStatus(status) + ("\n(this runId was already known: "
                      "no second backup was started)" if known or status.duplicate else ""))
        return 0
    if output.showsProgress:
        output.out.write(f"run {runId} started; Ctrl-C detaches"
                         + (" and cancels it" if args.cancel_on_interrupt else "") + "\n")
    # --json: each event as a JSON line as it comes, the result last
    output.jsonLines = True

    def interrupted() -> Any:
        if args.cancel_on_interrupt:
            output.err.write(f"\ncancelling run {runId}...\n")
            return client.cancelBackup(runId).addErrback(lambda _: None)
        if folder is not None:
            output.err.write(f"\ndetached; the backup goes on, and this resumes it where it "
                             f"stopped: {resumeCommand(args, runId, args.download, args.release)}"
                             "\n")
        else:
            output.err.write(f"\ndetached; the backup goes on: "
                             f"{commandLine(args, 'status', runId)}\n")
        return None

    job = await driveJob(reactor, runner, request, output, interrupted)
    final = job.status
    assert final is not None
    if job.failedStep == "follow" or not args.download:
        output.result(final, describeStatus(final))
        return 0 if final.state == "completed" else EXIT_REFUSED
    raiseIfStopped(job)
    if not output.asJSON:
        output.out.write(describeStatus(final) + "\n")
    result = fetched(job)
    output.result({"status": converter.unstructure(final), "download": result},
                  describeFetched(result))
    return 0


async def statusCommand(client: BackupRemoteClient, args: argparse.Namespace,
                        output: Output) -> int:
    status = await client.getExecutionStatus(args.run_id)
    output.result(*await withLicenceExpiry(client, status, describeStatus(status),
                                           label="  licence: "))
    return 0


async def cancelCommand(client: BackupRemoteClient, args: argparse.Namespace,
                        output: Output) -> int:
    try:
        status = await client.cancelBackup(args.run_id)
    except BackupRemoteError as error:
        state = error.details.get("state") if error.code == CONFLICT else None
        if state is None:
            raise
        raise evolve(error, hint=f"Nothing to do: the run already ended ({state}). "
                     f"`backupremote status {args.run_id}` shows how.") from None
    output.result(status, describeStatus(status))
    return 0
