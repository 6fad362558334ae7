"""
Benchmark: downloading a 1 GiB artifact through the real server and client
against a plain Twisted TLS stream of the same file.

Makes a SQLite database of about ``--size-mib`` MiB of random blobs, starts
a real ``twistd backupremote-server`` in its own process and backs it up
(compression "none") so that the server stages a ~1 GiB artifact of its own.
Then, for each of ``--runs`` pairs (alternating which goes first):

  real   a client process (benchmarks/_transfer_peers.py download) connects
         over TLS to 127.0.0.1, authenticates and runs
         ``BackupRemoteClient.download`` (manifest, chunk hashes, windowed
         chunk stream, per-chunk and whole-file checks, fsync, rename);
  plain  a plain Twisted server process sends the same staged file with
         ``FileSender`` over an ``ssl:`` endpoint (same certificate) to a
         receiver process that writes it to disk and fsyncs it.

Printed: each pair, the median ratio of throughputs real/plain (target at
least 0.8) and the peak RSS (VmHWM) of each of the four processes (target
under 100 MB each). Everything is removed at exit, Ctrl-C included. Exits
non-zero if a run fails, not when a target is missed.

    .venv/bin/python benchmarks/transfer.py            # 1 GiB, 5 pairs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import time
import uuid
from functools import partial
from pathlib import Path

from _common import (
    MB,
    PYTHON,
    REPO,
    MiB,
    OthersMeter,
    Workspace,
    cpuSeconds,
    currentRss,
    machineLine,
    mb,
    median,
    observed,
    peakRss,
    quietLine,
    resetPeakRss,
    runBenchmark,
    startServer,
    verdict,
)

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from tests.databases.servers import _Daemon, freePort, runProcess

RATIO_TARGET = 0.8
RSS_TARGET = 100 * MB
PEERS = str(Path(__file__).resolve().with_name("_transfer_peers.py"))
PEER_ENV = dict(os.environ, PYTHONPATH=str(REPO))
#: Each row: a 1,000,000-byte blob, which SQLite (default 4 KiB pages) keeps in
#: 244 overflow pages plus about 1.6 KB of a leaf page: about 1,001,100 bytes on disk.
BLOB = 1_000_000
ROW_ON_DISK = 1_001_100


def parseArguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download a staged artifact through the real backupremote server and "
                    "client (separate processes, TLS on 127.0.0.1) against a plain Twisted "
                    "FileSender TLS stream of the same file, in alternating pairs.",
        epilog="Targets: median throughput ratio real/plain >= 0.8; peak RSS < 100 MB for "
               "each process.")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="artifact size in MiB, about (default 1024: 1 GiB)")
    parser.add_argument("--runs", type=int, default=5,
                        help="paired runs, at least 3 (default 5)")
    arguments = parser.parse_args()
    if arguments.runs < 3:
        parser.error("--runs must be at least 3")
    if arguments.size_mib < 1:
        parser.error("--size-mib must be at least 1")
    return arguments


def makeDatabase(path: Path, size: int) -> None:
    """A SQLite file of about C{size} bytes of random (incompressible) blobs."""
    generator = random.Random(2026)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        rows = max(1, round(size / ROW_ON_DISK))
        with connection:
            for number in range(rows):
                connection.execute("INSERT INTO blobs (id, data) VALUES (?, ?)",
                                   (number, generator.randbytes(BLOB)))
    finally:
        connection.close()


async def stageArtifact(workspace: Workspace, backend, sizeMiB: int) -> tuple[str, Path, str]:
    """Back the SQLite file up through the server: its runId, staged path and sha256."""
    started = time.monotonic()
    source = workspace.path("db") / "big.sqlite"
    makeDatabase(source, sizeMiB * MiB)
    client = backend.client(workspace)
    config = await client.createDatabaseConfig(DatabaseConfigInput(
        name="big", engine="sqlite", path=str(source),
        backup=BackupOptions(compression="none", checksum="sha256", verification="stream")))
    runId = str(uuid.uuid4())
    resetPeakRss(backend.pid)
    await client.executeBackup(runId, config.id)
    status = await client.followRun(runId)
    if status.state != "completed":
        raise RuntimeError(f"staging run ended {status.state}: {status.errorCode} "
                           f"{status.errorMessage}")
    manifest = await client.listFiles(runId)
    entry = manifest.files[0]
    folder = backend.stagingFolder(runId)
    if folder is None or not (folder / entry.name).is_file():
        raise RuntimeError(f"the staged artifact of run {runId} is not in the server's staging")
    staged = folder / entry.name
    source.unlink()
    print(f"staged {entry.name}: {entry.sizeBytes} bytes ({entry.sizeBytes / MiB:.1f} MiB), "
          f"{entry.chunkCount} chunks of {entry.chunkSize} bytes, made in "
          f"{time.monotonic() - started:.1f} s (server peak RSS during that backup run: "
          f"{mb(peakRss(backend.pid))})")
    return runId, staged, entry.sha256


async def peer(*args: str) -> dict:
    result = await runProcess([PYTHON, PEERS, *args], PEER_ENV, timeout=1800)
    if not result.ok:
        raise RuntimeError(f"{args[0]} failed ({result.code}): {result.err[-3000:]}")
    return json.loads(result.out.strip().splitlines()[-1])


async def realRun(workspace: Workspace, backend, runId: str, size: int, index: int) -> dict:
    folder = workspace.path(f"real-{index}")
    resetPeakRss(backend.pid)
    cpuBefore = cpuSeconds(backend.pid)[0]
    figures = await peer("download", "--config", str(backend.clientConfig),
                         "--run-id", runId, "--dir", str(folder))
    figures["serverPeak"] = peakRss(backend.pid)
    figures["serverCpu"] = cpuSeconds(backend.pid)[0] - cpuBefore
    if figures["bytes"] != size:
        raise RuntimeError(f"the real download wrote {figures['bytes']} bytes, not {size}")
    Path(figures["path"]).unlink()
    return figures


async def plainRun(workspace: Workspace, sender, port: int, size: int, sha256: str,
                   index: int) -> dict:
    out = workspace.path(f"plain-{index}.bin")
    resetPeakRss(sender.pid)
    cpuBefore = cpuSeconds(sender.pid)[0]
    figures = await peer("plain-receive", "--port", str(port), "--out", str(out))
    figures["serverPeak"] = peakRss(sender.pid)
    figures["serverCpu"] = cpuSeconds(sender.pid)[0] - cpuBefore
    if figures["bytes"] != size or out.stat().st_size != size:
        raise RuntimeError(f"the plain stream delivered {figures['bytes']} bytes, not {size}")
    if fileSha256(out) != sha256:
        raise RuntimeError("the plain stream delivered different bytes")
    out.unlink()
    return figures


def fileSha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


async def startPlainSender(workspace: Workspace, backend, staged: Path) -> tuple:
    port = freePort()
    tls = backend.serverDir / "tls"
    folder = workspace.path("plain-sender")
    folder.mkdir()
    sender = _Daemon.spawn(
        "plain FileSender", [PYTHON, PEERS, "plain-send", "--port", str(port), "--file",
                             str(staged), "--key", str(tls / "server.key"),
                             "--cert", str(tls / "server.crt")],
        PEER_ENV, str(folder), str(folder / "out.log"))
    workspace.addCleanup(sender.stop)
    await sender.waitUntilReady(port, extraLog=str(folder / "out.log"))
    return sender, port


def rate(size: int, seconds: float) -> float:
    return size / MB / seconds


async def main(workspace: Workspace, arguments: argparse.Namespace) -> int:
    print(machineLine())
    print(f"working in {workspace.root}")
    workspace.path("db").mkdir()
    backend = await startServer(
        workspace, f'[databases]\nsqlite_roots = ["{workspace.path("db")}"]\n')
    print(f"backupremote server: pid {backend.pid}, port {backend.port}, "
          f"RSS {mb(currentRss(backend.pid))} after start-up")
    runId, staged, sha256 = await stageArtifact(workspace, backend, arguments.size_mib)
    size = staged.stat().st_size
    sender, port = await startPlainSender(workspace, backend, staged)

    print("\nothers: CPU s used by other processes during the pair (noise);\n"
          "CPU s: receiving side + sending side (real: client + server; plain: receiver + "
          "sender);\nRSS: peak of each process during the run (real: client, server; "
          "plain: receiver, sender).")
    print(f"{'pair':>4} {'first':>5} {'others':>7} {'real s':>7} {'MB/s':>5} {'plain s':>8}"
          f" {'MB/s':>5} {'ratio':>6} {'real CPU s':>11} {'plain CPU s':>12}"
          f" {'real RSS MB':>12} {'plain RSS MB':>13}")
    pairs = []
    meter = OthersMeter()
    for index in range(1, arguments.runs + 1):
        realFirst = index % 2 == 1
        runs = {
            "real": partial(realRun, workspace, backend, runId, size, index),
            "plain": partial(plainRun, workspace, sender, port, size, sha256, index),
        }
        pids = {"real": [backend.pid], "plain": [sender.pid]}
        done = {}
        for side in ("real", "plain") if realFirst else ("plain", "real"):
            done[side] = await observed(meter, pids[side], runs[side]())
        real, plain = done["real"], done["plain"]
        pairs.append((real, plain))
        print(f"{index:>4} {'real' if realFirst else 'plain':>5} "
              f"{real['others'] + plain['others']:>7.1f}"
              f" {real['seconds']:>7.2f} {rate(size, real['seconds']):>5.0f}"
              f" {plain['seconds']:>8.2f} {rate(size, plain['seconds']):>5.0f}"
              f" {plain['seconds'] / real['seconds']:>6.3f}"
              f" {pairOf(real['cpu'], real['serverCpu'], '.2f'):>11}"
              f" {pairOf(plain['cpu'], plain['serverCpu'], '.2f'):>12}"
              f" {pairOf(real['peakRss'] / MB, real['serverPeak'] / MB, '.0f'):>12}"
              f" {pairOf(plain['peakRss'] / MB, plain['serverPeak'] / MB, '.0f'):>13}")

    await backend.client(workspace).releaseArtifact(runId)
    realTimes = [real["seconds"] for real, _ in pairs]
    plainTimes = [plain["seconds"] for _, plain in pairs]
    medianRatio = median([p / r for r, p in zip(realTimes, plainTimes, strict=True)])
    print(f"\nartifact: {size} bytes ({size / MiB:.1f} MiB); median real "
          f"{rate(size, median(realTimes)):.0f} MB/s, median plain "
          f"{rate(size, median(plainTimes)):.0f} MB/s; best real {rate(size, min(realTimes)):.0f}"
          f" MB/s, best plain {rate(size, min(plainTimes)):.0f} MB/s (ratio of the bests "
          f"{min(plainTimes) / min(realTimes):.3f})")
    print(f"median ratio real/plain: {medianRatio:.3f} (target >= {RATIO_TARGET}): "
          f"{verdict(medianRatio >= RATIO_TARGET)}")
    print(quietLine([(plain["seconds"] / real["seconds"], real["others"] + plain["others"],
                      real["seconds"] + plain["seconds"]) for real, plain in pairs], "ratio"))
    for name, key, side in (("real client", "peakRss", 0), ("real server", "serverPeak", 0),
                            ("plain receiver", "peakRss", 1), ("plain sender", "serverPeak", 1)):
        peak = max(pair[side][key] for pair in pairs)
        judged = verdict(peak < RSS_TARGET) if side == 0 else "for comparison"
        print(f"peak RSS {name}: {mb(peak)} (target < {mb(RSS_TARGET)}): {judged}")
    print(meter.summary())
    print(machineLine())
    return 0


def pairOf(a: float, b: float, spec: str) -> str:
    """Two figures of a pair as "a+b"."""
    return f"{a:{spec}}+{b:{spec}}"


if __name__ == "__main__":
    options = parseArguments()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("transfer"))
