"""``backupremote files``, ``download`` and ``release``: a run's staged artifact."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TextIO


from backupremote.cli.output import Output
from backupremote.cli.progress import BAR, PLAIN_EVERY, duration, size
from backupremote.cli.remote import withClient
from backupremote.cli.jobs import (
    driveJob,
    fetched,
    folderPath,
    raiseIfStopped,
    resumeCommand,
    withJobs,
)
from backupremote.client.api import BackupRemoteClient
from backupremote.client.jobs import JobRequest, JobRunner
from backupremote.client.download.fetch import DownloadProgress
from backupremote.protocol.transfers import Manifest

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore

RESUME_NOTE = ("Interrupted? Run the same command again: it resumes where it stopped, "
               "re-checking what it already has.")


def register(commands: Any) -> None:
    files = commands.add_parser(
        "files", help="the staged artifact of a finished run (its manifest)",
        epilog="example: backupremote --config client.toml files 0b8e...")
    files.add_argument("run_id")
    files.set_defaults(onReactor=withClient(filesCommand))
    download = commands.add_parser(
        "download", help="fetch a run's artifact into a folder, verified and resumable",
        epilog="example: backupremote --config client.toml download 0b8e... /backups   "
               + RESUME_NOTE + " The server keeps the staging until `release` (or its TTL).")
    download.add_argument("run_id")
    download.add_argument("directory", help="the folder to put the file in (made if need be)")
    download.add_argument("--release", action="store_true",
                          help="release the server's staging once the file is verified")
    download.set_defaults(onReactor=withJobs(downloadCommand))
    release = commands.add_parser(
        "release", help="let the server delete a run's staged artifact",
        epilog="example: backupremote --config client.toml release 0b8e...")
    release.add_argument("run_id")
    release.set_defaults(onReactor=withClient(releaseCommand))


def describeManifest(manifest: Manifest) -> str:
    lines = [f"run {manifest.runId}: staged until {manifest.expiresAt.isoformat()}"]
    for entry in manifest.files:
        lines += [f"  {entry.name}", f"    file id  {entry.fileId}",
                  (f"    size     {size(entry.sizeBytes)} ({entry.sizeBytes} bytes, "
                   f"{entry.chunkCount} chunks of {entry.chunkSize})"),
                  f"    sha256   {entry.sha256}"]
    return "\n".join(lines)


def describeDownload(progress: DownloadProgress) -> str:
    """One line: name, bar, bytes, rate and ETA."""
    parts = [progress.name]
    if progress.sizeBytes:
        share = min(1.0, progress.bytesDone / progress.sizeBytes)
        filled = int(share * BAR)
        parts.append("[" + "#" * filled + "-" * (BAR - filled) + f"] {share * 100:3.0f}%")
    parts.append(f"{size(progress.bytesDone)} / {size(progress.sizeBytes)}")
    if progress.phase == "downloading" and progress.rate:
        parts.append(f"{size(progress.rate)}/s")
        if progress.bytesDone < progress.sizeBytes:
            parts.append(f"ETA {duration((progress.sizeBytes - progress.bytesDone) / progress.rate)}")
    if progress.phase != "downloading":
        parts.append(progress.phase)
    elif progress.resumedFrom:
        parts.append(f"resumed at chunk {progress.resumedFrom}")
    if progress.reconnects:
        parts.append(f"({progress.reconnects} reconnect{'s' if progress.reconnects > 1 else ''})")
    return "  ".join(parts)


class DownloadView:
    """A redrawn progress line on a terminal; a line every few seconds elsewhere."""

    def __init__(self, out: TextIO, interactive: bool) -> None:
        self.out = out
        self.interactive = interactive
        self._phase: str | None = None
        self._lastPlain = 0.0

    def __call__(self, progress: DownloadProgress) -> None:
        line = describeDownload(progress)
        if self.interactive:
            self.out.write("\r\x1b[K" + line + ("\n" if progress.phase == "done" else ""))
        elif progress.phase != self._phase or time.monotonic() - self._lastPlain >= PLAIN_EVERY:
            self.out.write(line + "\n")
            self._lastPlain = time.monotonic()
        self._phase = progress.phase
        self.out.flush()


def describeFetched(result: dict[str, Any]) -> str:
    lines = [f"saved {result['path']} ({size(result['sizeBytes'])}, sha256 {result['sha256']})"]
    lines.append("the server's staging was released" if result["released"] else
                 f"the server keeps its copy until `backupremote release {result['runId']}` "
                 "or its TTL")
    return "\n".join(lines)


async def filesCommand(client: BackupRemoteClient, args: argparse.Namespace,
                       output: Output) -> int:
    manifest = await client.listFiles(args.run_id)
    output.result(manifest, describeManifest(manifest))
    return 0


async def downloadCommand(client: BackupRemoteClient, runner: JobRunner,
                          args: argparse.Namespace, output: Output,
                          reactor: IReactorCore) -> int:
    folder = folderPath(args.directory)
    request = JobRequest(args.run_id, goal="released" if args.release else "delivered",
                         downloadFolder=folder, server=args.serverName)
    job = await driveJob(reactor, runner, request, output, lambda: output.err.write(
        "\ninterrupted; the part already fetched is kept, and this resumes it: "
        f"{resumeCommand(args, args.run_id, args.directory, args.release)}\n"))
    raiseIfStopped(job)
    result = fetched(job)
    output.result(result, describeFetched(result))
    return 0


async def releaseCommand(client: BackupRemoteClient, args: argparse.Namespace,
                         output: Output) -> int:
    released = await client.releaseArtifact(args.run_id)
    output.result({"runId": args.run_id, "released": released},
                  f"run {args.run_id}: " + ("staging released" if released else
                                             "nothing was staged any more"))
    return 0
