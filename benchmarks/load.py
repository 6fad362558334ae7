"""
Benchmark: the control plane under load.

N authenticated clients, spread over --processes separate load processes
(each a Twisted reactor holding N/processes connections of the client
library), each asking ``listDatabaseConfigs``, ``getExecutionStatus`` and
``ping`` in turn at --rate requests a second, while the server works:

  idle       nothing else (the floor);
  backup     one PostgreSQL backup (pgbench, plain, zstd -3 on all cores,
             sha256, stream verification), as backup_pipeline.py runs it;
  downloads  four concurrent downloads (separate processes,
             benchmarks/_transfer_peers.py) of an uncompressed staged dump
             (about 590 MB at scale 60), made before the load starts.

The backup and the four downloads are also timed alone, before the load,
so their slowdown under load is printed. Per phase: requests, p50, p99 and
max latency (from sending the request to its answer, measured in the load
processes on the monotonic clock the phases are timed on), errors by code,
the server process's own CPU (a share of one core: its reactor thread and its
threads, not its children), and disconnects (connections the library had to
open again). The load processes stop when their stdin closes, or after
--max-seconds at most.

    .venv/bin/python benchmarks/load.py                          # 200 clients, scale 60
    .venv/bin/python benchmarks/load.py --clients 50 --scale 10  # a quick look

The machine's load average is printed before and after: on a machine that
other work shares, the latencies are the machine's as much as the server's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    REPO,
    Workspace,
    cpuSeconds,
    machineLine,
    mb,
    runBenchmark,
    startServer,
)

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions

TARGET_P99 = 0.050
PEERS = str(Path(__file__).resolve().with_name("_transfer_peers.py"))
PEER_ENV = dict(os.environ, PYTHONPATH=str(REPO))
BACKUP = BackupOptions(format="plain", compression="zstd", level=3, threads=0,
                       checksum="sha256", verification="stream")
STAGED = BackupOptions(format="plain", compression="none", checksum="sha256",
                       verification="none")


def parseArguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Latency of listDatabaseConfigs, getExecutionStatus and ping from N "
                    "clients in separate processes while the server runs a backup and then "
                    "four downloads.",
        epilog=f"Target: 200 clients, p99 under {TARGET_P99 * 1000:.0f} ms, no error, no "
               "disconnect.")
    parser.add_argument("--clients", type=int, default=200, help="connections (default 200)")
    parser.add_argument("--processes", type=int, default=4,
                        help="load processes the clients are spread over (default 4)")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="requests a second per client (default 10)")
    parser.add_argument("--scale", type=int, default=60, help="pgbench scale (default 60)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of the idle phase (default 10)")
    parser.add_argument("--slow-ms", type=float, default=0.0,
                        help="also print when, in each phase, the answers slower than this "
                             "came (requests sent in each quarter second): one stall of the "
                             "server, or many")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="the load processes stop after this many seconds at most")
    # a load process (started by the benchmark itself)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --- a load process ----------------------------------------------------------------


async def worker(arguments: argparse.Namespace) -> None:
    """Hold C{--clients} connections, ask at C{--rate} each until stdin closes; write figures."""
    from twisted.python.filepath import FilePath

    import resource

    from twisted.protocols import amp

    from backupremote.client.api import BackupRemoteClient
    from backupremote.client.config import loadClientConfig
    from backupremote.protocol.errors import BackupRemoteError

    config = loadClientConfig(FilePath(arguments.config))
    clients = [BackupRemoteClient.fromConfig(reactor, config) for _ in range(arguments.clients)]
    built = [0]
    for client in clients:
        manager = client.connection
        original = manager._authenticated

        def counting(protocol: Any, _original: Any = original) -> None:
            built[0] += 1
            _original(protocol)

        # every connection that authenticates (a reconnect too) is counted
        manager._authenticated = counting
    # one at a time: the server counts authentications in flight from one
    # address against its limit of failures (all of ours come from 127.0.0.1)
    protocols = []
    for client in clients:
        client.connection.service.startService()  # connects at once: one at a time
        protocols.append(await client.connection.connection())
    stopping: list[bool] = []
    starts: list[float] = []
    latencies: list[float] = []
    errors: list[tuple[float, str]] = []
    # Raw boxes on the authenticated connections, answers left undecoded: the
    # load processes share the machine with the server, so each request costs
    # them as little as it can (the library's call would decode every answer).
    requests = [(b"listDatabaseConfigs", {"offset": b"0", "limit": b"100"}),
                (b"getExecutionStatus", {"runId": arguments.run_id.encode("ascii")}),
                (b"ping", {})]
    interval = 1.0 / arguments.rate

    async def ask(index: int, offset: float) -> None:
        begin = time.monotonic() + offset
        number = 0
        while not stopping:
            due = begin + number * interval
            wait = due - time.monotonic()
            if wait > 0:
                await deferLater(reactor, wait, lambda: None)
            command, kwargs = requests[number % len(requests)]
            number += 1
            sent = time.monotonic()
            try:
                await protocols[index].callRemoteString(command, **kwargs)
            except amp.RemoteAmpError as error:
                errors.append((sent, error.errorCode.decode("ascii", "replace")))
                continue
            except Exception as error:  # the connection was lost: take the library's next one
                errors.append((sent, type(error).__name__))
                try:
                    protocols[index] = await clients[index].connection.connection()
                except BackupRemoteError:
                    pass
                continue
            starts.append(sent)
            latencies.append(time.monotonic() - sent)

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpuStart, wallStart = usage.ru_utime + usage.ru_stime, time.monotonic()
    loops = [Deferred.fromCoroutine(ask(index, random.random() * interval))
             for index in range(len(clients))]
    finished: Deferred[None] = Deferred()
    reactor.callLater(arguments.max_seconds, lambda: finished.called or finished.callback(None))

    from twisted.internet import stdio
    from twisted.internet.protocol import Protocol

    class Watch(Protocol):
        def connectionLost(self, reason: Any = None) -> None:
            if not finished.called:
                finished.callback(None)

    stdio.StandardIO(Watch())
    await finished
    stopping.append(True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpuShare = (usage.ru_utime + usage.ru_stime - cpuStart) / (time.monotonic() - wallStart)
    await DeferredList(loops, consumeErrors=True)
    with open(arguments.out, "w") as out:
        json.dump({"starts": starts, "latencies": latencies, "errors": errors,
                   "built": built[0], "cpuShare": cpuShare}, out)
    for client in clients:
        await client.close()


# --- the benchmark -------------------------------------------------------------------


class Peer(ProcessProtocol):
    """A child process: its first line (``ready``, if C{saysReady}), its output, its end."""

    def __init__(self, saysReady: bool = False) -> None:
        self.saysReady = saysReady
        self.out = b""
        self.err = b""
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[int] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out += data
        if not self.ready.called and b"ready\n" in self.out:
            self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.err += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode
        if self.saysReady and not self.ready.called:
            self.ready.errback(RuntimeError(f"a load process ended ({code}) before it was "
                                            f"ready: {self.err.decode()[-2000:]}"))
        self.ended.callback(code)


async def finishedRun(client: Any, runId: str) -> Any:
    status = await client.followRun(runId, lambda event: None)
    if status.state != "completed":
        raise RuntimeError(f"run {runId} ended {status.state}: {status.errorCode} "
                           f"{status.errorMessage}")
    return status


async def timedBackup(client: Any, configId: str) -> float:
    runId = str(uuid.uuid4())
    started = time.monotonic()
    await client.executeBackup(runId, configId, BACKUP)
    await finishedRun(client, runId)
    seconds = time.monotonic() - started
    await client.releaseArtifact(runId)
    return seconds


async def timedDownloads(workspace: Workspace, backend: Any, runId: str, label: str) -> float:
    """Four concurrent downloads of C{runId}, in separate processes; the seconds of all four."""
    peers = []
    started = time.monotonic()
    for index in range(4):
        folder = workspace.path(f"download-{label}-{index}")
        peer = Peer()
        reactor.spawnProcess(
            peer, sys.executable,
            [sys.executable, PEERS, "download", "--config", str(backend.clientConfig),
             "--run-id", runId, "--dir", str(folder)], env=PEER_ENV)
        peers.append((peer, folder))
    for peer, _ in peers:
        code = await peer.ended
        if code != 0:
            raise RuntimeError(f"a download failed ({code}): {peer.err.decode()[-2000:]}")
    seconds = time.monotonic() - started
    for peer, _ in peers:
        Path(json.loads(peer.out.decode().splitlines()[-1])["path"]).unlink()
    return seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def main(workspace: Workspace, arguments: argparse.Namespace) -> int:
    from tests.databases.servers import checkProcess, startPostgreSQL

    print(machineLine())
    database = await startPostgreSQL(workspace)
    await checkProcess(
        [os.path.join(database.binDir, "pgbench"), "-i", "-q", "-s", str(arguments.scale),
         "-h", database.host, "-p", str(database.port), "-U", database.superuser,
         database.database],
        database.env(database.superuserPassword), timeout=3600)
    backend = await startServer(workspace)
    client = backend.client(workspace)
    config = await client.createDatabaseConfig(DatabaseConfigInput(
        name="pgbench", engine="postgresql", host=database.host, port=database.port,
        database=database.database, user=database.superuser,
        password=database.superuserPassword, backup=BACKUP))
    # what the downloads fetch: the dump uncompressed, staged once
    staged = str(uuid.uuid4())
    await client.executeBackup(staged, config.id, STAGED)
    status = await finishedRun(client, staged)
    print(f"pgbench scale {arguments.scale}; staged for the downloads: "
          f"{mb(status.artifact.sizeBytes)} (run {staged})")

    await timedBackup(client, config.id)  # warm-up, untimed
    backupAlone = await timedBackup(client, config.id)
    downloadsAlone = await timedDownloads(workspace, backend, staged, "alone")
    print(f"alone: backup {backupAlone:.2f} s, four downloads {downloadsAlone:.2f} s")

    perProcess = [arguments.clients // arguments.processes
                  + (1 if index < arguments.clients % arguments.processes else 0)
                  for index in range(arguments.processes)]
    workers = []
    for index, count in enumerate(perProcess):
        out = workspace.path(f"load-{index}.json")
        peer = Peer(saysReady=True)
        transport = reactor.spawnProcess(
            peer, sys.executable,
            [sys.executable, __file__, "--worker", "--config", str(backend.clientConfig),
             "--run-id", staged, "--clients", str(count), "--rate", str(arguments.rate),
             "--max-seconds", str(arguments.max_seconds), "--out", str(out)],
            env=PEER_ENV, childFDs={0: "w", 1: "r", 2: "r"})
        workspace.addCleanup(lambda t=transport: t.signalProcess(signal.SIGKILL)
                             if t.pid else None)
        workers.append((peer, transport, out))
    for peer, _, _ in workers:
        await peer.ready
    loadBefore = os.getloadavg()
    print(f"{arguments.clients} clients connected in {arguments.processes} processes, "
          f"{arguments.rate:g} requests/s each; load average "
          f"{', '.join(f'{x:.2f}' for x in loadBefore)}")

    phases = []
    serverCpu = []  # the server process's own CPU seconds in each phase (children excluded)
    started, cpu = time.monotonic(), cpuSeconds(backend.pid)[0]
    await deferLater(reactor, arguments.idle, lambda: None)
    phases.append(("idle", started, time.monotonic(), None))
    serverCpu.append(cpuSeconds(backend.pid)[0] - cpu)
    started, cpu = time.monotonic(), cpuSeconds(backend.pid)[0]
    backupLoaded = await timedBackup(client, config.id)
    phases.append(("backup", started, time.monotonic(), backupLoaded / backupAlone))
    serverCpu.append(cpuSeconds(backend.pid)[0] - cpu)
    started, cpu = time.monotonic(), cpuSeconds(backend.pid)[0]
    downloadsLoaded = await timedDownloads(workspace, backend, staged, "loaded")
    phases.append(("downloads", started, time.monotonic(), downloadsLoaded / downloadsAlone))
    serverCpu.append(cpuSeconds(backend.pid)[0] - cpu)
    loadAfter = os.getloadavg()
    for peer, transport, _ in workers:
        transport.closeStdin()
    for peer, _, _ in workers:
        code = await peer.ended
        if code != 0:
            raise RuntimeError(f"a load process failed ({code}): {peer.err.decode()[-2000:]}")

    starts: list[float] = []
    latencies: list[float] = []
    errors: list[tuple[float, str]] = []
    built = 0
    shares = []
    for _, _, out in workers:
        figures = json.loads(out.read_text())
        starts += figures["starts"]
        latencies += figures["latencies"]
        errors += [tuple(e) for e in figures["errors"]]
        built += figures["built"]
        shares.append(figures["cpuShare"])
    print(f"\nload average before {', '.join(f'{x:.2f}' for x in loadBefore)}, after "
          f"{', '.join(f'{x:.2f}' for x in loadAfter)}")
    print(f"{'phase':>9} {'seconds':>8} {'requests':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'errors':>7} {'server CPU':>11}  slowdown of the work")
    worst = 0.0
    for (name, begin, end, slowdown), cpu in zip(phases, serverCpu):
        inPhase = [lat for at, lat in zip(starts, latencies) if begin <= at < end]
        failed = [code for at, code in errors if begin <= at < end]
        if not inPhase:
            print(f"{name:>9} {end - begin:>8.1f}  no answer in this phase")
            continue
        p99 = percentile(inPhase, 0.99)
        worst = max(worst, p99)
        print(f"{name:>9} {end - begin:>8.1f} {len(inPhase):>9} "
              f"{1000 * percentile(inPhase, 0.50):>7.1f} {1000 * p99:>7.1f} "
              f"{1000 * max(inPhase):>7.1f} {len(failed):>7} {cpu / (end - begin):>10.0%}  "
              + (f"{slowdown:.2f}x alone" if slowdown else "-"))
        if arguments.slow_ms:
            quarters: dict[int, int] = {}
            for at, lat in zip(starts, latencies):
                if begin <= at < end and lat * 1000 > arguments.slow_ms:
                    quarter = int((at - begin) * 4)
                    quarters[quarter] = quarters.get(quarter, 0) + 1
            print(f"{'':>9} slower than {arguments.slow_ms:g} ms, sent at (s into the phase "
                  f"begun at monotonic {begin:.2f}: count): "
                  + (", ".join(f"{q / 4:.2f}: {n}" for q, n in sorted(quarters.items()))
                     or "none"))
    codes: dict[str, int] = {}
    for _, code in errors:
        codes[code] = codes.get(code, 0) + 1
    print(f"load processes: {len(shares)}, each {min(shares):.0%}-{max(shares):.0%} of a core "
          "while asking (they share the machine with the server)")
    print(f"errors: {codes or 'none'}; disconnects: {built - arguments.clients} "
          f"({built} authenticated connections for {arguments.clients} clients)")
    met = worst < TARGET_P99 and not errors and built == arguments.clients
    print(f"target (p99 under {TARGET_P99 * 1000:.0f} ms in every phase, no error, no "
          f"disconnect) with {arguments.clients} clients: {'met' if met else 'missed'}")
    print(machineLine())
    return 0


if __name__ == "__main__":
    options = parseArguments()
    if options.worker:
        from twisted.internet.task import react

        react(lambda _: Deferred.fromCoroutine(worker(options)))
    else:
        runBenchmark(lambda workspace: main(workspace, options), Workspace("load"))
