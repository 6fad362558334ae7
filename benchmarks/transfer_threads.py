"""
Where a download's time goes, thread by thread: the real download (with the
server's reactor on its short CPU time slice and on the kernel's default,
switched between runs on the same server) against the plain TLS stream of
transfer.py, in rounds whose order rotates.

For every run, each thread of the sending and the receiving process is
sampled from ``/proc/PID/task/TID/schedstat`` every 20 ms: seconds on a core
and seconds runnable but waiting for one. Start-up and imports of the
receiving process are included (the receiver is timed as a whole process).

    .venv/bin/python benchmarks/transfer_threads.py --runs 3 [--compare-client NAME=TREE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

from _common import (
    OthersMeter,
    Workspace,
    machineLine,
    median,
    observed,
    runBenchmark,
    startServer,
)

from transfer import peer, plainRun, stageArtifact, startPlainSender

from tests.databases.servers import runProcess

from backupremote.server.machinery.timeslice import requestSlice, sliceOf


def schedstat(pid: int) -> dict[int, tuple[str, int, int]]:
    """Each thread of C{pid}: (name, ns on a core, ns waiting for one)."""
    threads = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return threads
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait = f.read().split()[:2]
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
        except (OSError, ValueError):
            continue
        threads[int(tid)] = (name, int(run), int(wait))
    return threads


def peerPids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                line = f.read()
        except OSError:
            continue
        if b"_transfer_peers.py" in line and b"plain-send" not in line:
            pids.append(int(entry))
    return pids


class Sampler:
    """Samples the sender's threads and the receiving peer's (found by its command line)."""

    def __init__(self, sender: int) -> None:
        self.sender = sender
        self.first: dict[tuple[str, int, int], tuple[str, int, int]] = {}
        self.last: dict[tuple[str, int, int], tuple[str, int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for role, pids in (("send", [self.sender]), ("recv", peerPids())):
            for pid in pids:
                for tid, figures in schedstat(pid).items():
                    key = (role, pid, tid)
                    if key not in self.first:
                        # a receiving thread born meanwhile started from zero
                        self.first[key] = figures if role == "send" else (figures[0], 0, 0)
                    self.last[key] = figures

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(0.02)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> dict[tuple[str, str], tuple[float, float]]:
        """
        Per role (send, recv): the main (reactor) thread, the busiest other
        thread (the receiver's writer), and the rest summed: (on a core, waiting) s.
        """
        self._stop.set()
        self._thread.join()
        threads: dict[str, list[tuple[bool, float, float]]] = defaultdict(list)
        for key, (_, run, wait) in self.last.items():
            _, run0, wait0 = self.first[key]
            role, pid, tid = key
            threads[role].append((tid == pid, (run - run0) / 1e9, (wait - wait0) / 1e9))
        totals: dict[tuple[str, str], tuple[float, float]] = {}
        for role, rows in threads.items():
            others = sorted((r for r in rows if not r[0]), key=lambda r: -r[1])
            for main, run, wait in rows:
                if main:
                    totals[(role, "main")] = (run, wait)
            if others:
                totals[(role, "busiest other")] = others[0][1:]
            if len(others) > 1:
                totals[(role, "rest")] = (sum(r[1] for r in others[1:]),
                                          sum(r[2] for r in others[1:]))
        return totals


async def main(workspace: Workspace, arguments: argparse.Namespace) -> int:
    print(machineLine())
    workspace.path("db").mkdir()
    backend = await startServer(
        workspace, f'[databases]\nsqlite_roots = ["{workspace.path("db")}"]\n')
    runId, staged, sha256 = await stageArtifact(workspace, backend, arguments.size_mib)
    size = staged.stat().st_size
    sender, port = await startPlainSender(workspace, backend, staged)
    print(f"server reactor slice: {sliceOf(backend.pid)} ns")

    async def real(index: int, slice: int) -> dict:
        requestSlice(slice, backend.pid)
        folder = workspace.path(f"real-{index}-{slice}")
        figures = await peer("download", "--config", str(backend.clientConfig),
                             "--run-id", runId, "--dir", str(folder))
        Path(figures["path"]).unlink()
        return figures

    async def other(index: int, name: str, tree: Path, slice: int) -> dict:
        """The download peer of another tree (its client code), the same server."""
        requestSlice(slice, backend.pid)
        folder = workspace.path(f"{name}-{index}-{slice}")
        started = time.monotonic()
        result = await runProcess(
            [sys.executable, str(tree / "benchmarks" / "_transfer_peers.py"), "download",
             "--config", str(backend.clientConfig), "--run-id", runId, "--dir", str(folder)],
            dict(os.environ, PYTHONPATH=str(tree)), timeout=1800)
        if not result.ok:
            raise RuntimeError(f"the other tree's download failed: {result.err[-3000:]}")
        figures = json.loads(result.out.strip().splitlines()[-1])
        figures["whole"] = time.monotonic() - started
        Path(figures["path"]).unlink()
        return figures

    sides = {
        "real-slice": (lambda i: real(i, 100_000), backend.pid),
        "real-noslice": (lambda i: real(i, 0), backend.pid),
        "plain": (lambda i: plainRun(workspace, sender, port, size, sha256, i), sender.pid),
    }
    for spec in arguments.compare_client:
        name, tree = spec.split("=", 1)
        for label, slice in (("slice", 100_000), ("noslice", 0)):
            sides[f"{name}-{label}"] = (
                lambda i, n=name, t=Path(tree).resolve(), s=slice: other(i, n, t, s),
                backend.pid)
    names = list(sides)
    for name in names:  # warm-up
        await sides[name][0](0)
    meter = OthersMeter()
    results: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for index in range(1, arguments.runs + 1):
        shift = (index - 1) % len(names)
        for name in names[shift:] + names[:shift]:
            run, pid = sides[name]
            sampler = Sampler(pid)
            sampler.start()
            figures = await observed(meter, [pid], run(index))
            threads = sampler.stop()
            results[name].append((figures, threads))
            print(f"round {index} {name:>14}: {figures['seconds']:.2f} s "
                  f"[{figures['whole']:.2f} whole], others {figures['others']:.1f} CPU s; "
                  + "; ".join(f"{role}/{thread} {run:.2f}+{wait:.2f}w"
                              for (role, thread), (run, wait) in sorted(threads.items())))
    requestSlice(100_000, backend.pid)
    print("\nmedians (s): on a core + waiting for one, per thread")
    for name in names:
        rows = results[name]
        print(f"{name:>14}: {median([f['seconds'] for f, _ in rows]):.2f} s inside, "
              f"{median([f['whole'] for f, _ in rows]):.2f} s whole; CPU receiving "
              f"{median([f['cpu'] for f, _ in rows]):.2f} s")
        keys = sorted({key for _, threads in rows for key in threads})
        for key in keys:
            runs = [threads.get(key, (0.0, 0.0)) for _, threads in rows]
            print(f"    {key[0]}/{key[1]:<28} {median([r for r, _ in runs]):.2f} + "
                  f"{median([w for _, w in runs]):.2f}")
    print(meter.summary())
    print(machineLine())
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare-client", metavar="NAME=TREE", action="append", default=[],
                        help="also download with TREE's client code (a checkout of another "
                             "commit), on the same server, with the short slice and without "
                             "(sides NAME-slice, NAME-noslice); may be repeated")
    runBenchmark(lambda workspace: main(workspace, parser.parse_args()),
                 Workspace("transfer-threads"))
