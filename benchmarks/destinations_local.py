"""
Benchmark: the local-folder destination against ``cp`` + ``sync`` of the
same file into the same folder.

Makes a file of ``--size-mib`` MiB of random bytes (in /dev/shm when it has
room, so reading it costs no disk I/O on either side) and a destination
folder in the benchmark's temporary folder (under the OS temp folder: on
disk here, not tmpfs; TMPDIR chooses another), then for each of ``--runs`` pairs, alternating which goes first:

  tool  ``cp SOURCE FOLDER/cp-N.bin && sync FOLDER/cp-N.bin`` (``sync`` of
        that one file: an fsync, as ours does; a bare ``sync`` would also
        wait for other processes' dirty pages);
  ours  ``LocalFolderDestination.put`` (copy under a temporary name in the
        kernel, ``copy_file_range`` or, across file systems as here,
        ``sendfile``, in one pool thread; handed the source's size and SHA-256
        as the delivery queue hands the artifact's, or, with
        ``--hash-source``, computing the SHA-256 in another pool thread;
        fsync, drop the cached pages) and ``complete`` (rename, fsync of the
        folder).

The read-back (``readBack``: the file read again from the disk into a
SHA-256) is timed apart and printed after ours: the tools do not verify.
Both copies are removed after each pair. Printed: every pair, the median
ratio cp-time/our-time (target at least 0.9), the median over the quiet
pairs. Exits non-zero if a run fails, not when a target is missed.

    .venv/bin/python benchmarks/destinations_local.py               # 1 GiB, 5 pairs
    .venv/bin/python benchmarks/destinations_local.py --size-mib 256
"""

from __future__ import annotations

import argparse
import time

from _common import MB, MiB, Workspace, machineLine, runBenchmark
from _destinations import knownDigest, makeSource, runTool, timedPairs

from twisted.internet import reactor
from twisted.python.filepath import FilePath

from backupremote.client.destinations.local import LocalFolderDestination

TARGET = 0.9


async def main(workspace: Workspace, options: argparse.Namespace) -> int:
    print(machineLine())
    size = options.size_mib * MiB
    source = makeSource(workspace, options.size_mib)
    folder = workspace.path("destination")
    folder.mkdir(mode=0o700)
    destination = LocalFolderDestination(reactor, FilePath(str(folder)))
    known = knownDigest(source, options.hash_source)
    print(f"{size / MB:.1f} MB from {source} to {folder}")

    async def tool(run: int) -> dict:
        target = folder / f"cp-{run}.bin"
        return await runTool(["sh", "-c", 'cp -- "$1" "$2" && sync -- "$2"', "cp+sync",
                              str(source), str(target)])

    async def ours(run: int) -> dict:
        started = time.monotonic()
        upload = await destination.put(FilePath(str(source)), f"ours-{run}.bin", known=known)
        await destination.complete(upload)
        seconds = time.monotonic() - started
        started = time.monotonic()
        found = await destination.readBack(upload.name)
        readBack = time.monotonic() - started
        assert (found.size, found.sha256) == (upload.size, upload.sha256), found
        return {"seconds": seconds,
                "extra": f" [read-back {readBack:.2f} s, {size / readBack / MB:.0f} MB/s]"}

    async def between(run: int) -> None:
        (folder / f"cp-{run}.bin").unlink()
        await destination.delete(f"ours-{run}.bin")

    await timedPairs(options.runs, size, "cp+sync", tool, ours, between, TARGET)
    print(machineLine())
    return 0


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hash-source", action="store_true",
                        help="our put hashes the source (not handed its known SHA-256)")
    options = parser.parse_args()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("dest-local"))


if __name__ == "__main__":
    run()
