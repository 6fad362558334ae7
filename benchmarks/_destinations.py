"""
What the file-destination benchmarks (local folder, SFTP) share: the source
file of random bytes, and the loop of pairs that times a reference tool
against our destination, alternating which goes first.

A pair's ratio is tool time / our time (above 1: we were faster). Each side
is also observed with L{OthersMeter} (other processes' CPU meanwhile), so a
pair disturbed by the rest of the machine shows.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from _common import (
    MB,
    MiB,
    OthersMeter,
    Workspace,
    median,
    observed,
    quietLine,
    verdict,
)

from backupremote.client.destinations import KnownDigest


def makeSource(workspace: Workspace, sizeMiB: int, where: Path | None = None) -> Path:
    """
    C{sizeMiB} MiB of random bytes (incompressible), in /dev/shm when it
    has room (so reading the source costs no disk I/O on either side), else
    in C{where} or the workspace.
    """
    size = sizeMiB * MiB
    shm = os.statvfs("/dev/shm")
    if where is None and shm.f_bavail * shm.f_frsize > 3 * size:
        path = Path("/dev/shm") / f"br-bench-source-{os.getpid()}.bin"
    else:
        path = (where or workspace.root) / "source.bin"
    workspace.addCleanup(_unlink, path)
    with open(path, "wb") as f:
        for _ in range(sizeMiB):
            f.write(os.urandom(MiB))
    return path


def knownDigest(source: Path, hashing: bool) -> KnownDigest | None:
    """
    What our puts are handed, as the delivery queue hands them the
    artifact's size and SHA-256 (from the job's record, computed here
    before any timing); C{None} with C{hashing}, so the put hashes the
    source as it sends it (C{--hash-source}: a caller without the digest).
    """
    if hashing:
        return None
    with open(source, "rb") as f:
        return KnownDigest(os.fstat(f.fileno()).st_size,
                           hashlib.file_digest(f, "sha256").hexdigest())


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


async def runTool(argv: list[str], stdin: bytes | None = None) -> dict:
    """Run a reference tool to completion (blocking: nothing else runs meanwhile)."""
    started = time.monotonic()
    subprocess.run(argv, check=True, input=stdin, stdout=subprocess.DEVNULL)
    return {"seconds": time.monotonic() - started}


async def timedPairs(
    runs: int,
    size: int,
    toolName: str,
    tool: Callable[[int], Awaitable[dict]],
    ours: Callable[[int], Awaitable[dict]],
    between: Callable[[int], Awaitable[None]] | None = None,
    target: float = 0.8,
    pids: Sequence[int] = (),
) -> float:
    """
    C{runs} pairs of C{tool(run)} and C{ours(run)} (each returns a dict with
    C{seconds}, and optional C{extra}: text printed after ours), alternating
    which goes first; C{between(run)} after each pair (cleaning up, not
    timed). C{pids}: servers whose process trees' CPU is the benchmark's,
    not others'. Prints each pair, the median ratio tool/ours against
    C{target}, the median over the quiet pairs and the other processes'
    share; returns the median ratio.
    """
    meter = OthersMeter()
    pairs: list[tuple[float, float, float]] = []
    for run in range(runs):
        order = ["tool", "ours"] if run % 2 == 0 else ["ours", "tool"]
        took: dict[str, dict] = {}
        for side in order:
            run_ = tool(run) if side == "tool" else ours(run)
            took[side] = await observed(meter, list(pids), run_)
        toolSeconds, ourSeconds = took["tool"]["seconds"], took["ours"]["seconds"]
        ratio = toolSeconds / ourSeconds
        others = took["tool"]["others"] + took["ours"]["others"]
        pairs.append((ratio, others, toolSeconds + ourSeconds))
        extra = took["ours"].get("extra", "")
        print(f"pair {run + 1} ({order[0]} first): {toolName} {toolSeconds:6.2f} s "
              f"({size / toolSeconds / MB:6.1f} MB/s), ours {ourSeconds:6.2f} s "
              f"({size / ourSeconds / MB:6.1f} MB/s){extra}; ratio {ratio:.3f}; "
              f"others {others:.1f} CPU s", flush=True)
        if between is not None:
            await between(run)
    result = median([ratio for ratio, _, _ in pairs])
    print(f"median ratio {toolName}/ours time ({runs} pairs): {result:.3f} "
          f"({verdict(result >= target)}: at least {target})")
    print(quietLine(pairs, "ratio"))
    print(meter.summary())
    return result
