"""
Benchmark: one client daemon firing many schedules due at the same instant
on many servers.

Starts ``--servers`` real ``twistd backupremote-server`` processes on
127.0.0.1 (each with its own folder, certificate, issuer and licence, and
``--schedules / --servers`` small SQLite databases), writes one client
folder naming them all (``[servers.sN]``) and ``--schedules`` daily
schedules into its store, all due at the same whole minute (UTC), the first
one at least ``--lead`` seconds away, then starts the client daemon
(``twistd -n backupremote-client``, its own process). Every slot then runs
to its end (execute, follow, download, verify, release).

Printed: fires recorded (missed or skipped ones named), the start delay of
each slot from its fire time to the server's ``executeBackup`` log line
(p50, p99, max: the line is written once the server has admitted the run,
so this bounds from above the time the command took to reach it), the same
from the fire time to the client recording the fire, the time until every
job is released, and the client daemon's peak RSS (VmHWM, sampled until it
stops). Targets: no fire missed, p99 under 1 s, peak RSS under 120 MB.
Everything is removed at exit, Ctrl-C included. Exits non-zero if the
benchmark fails, not when a target is missed.

    .venv/bin/python benchmarks/scheduler.py                          # 20 servers, 200
    .venv/bin/python benchmarks/scheduler.py --servers 2 --schedules 10  # a quick look
    .venv/bin/python benchmarks/scheduler.py --logs DIR --profile DIR    # where the time goes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import time as clock
import uuid
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

from _common import (
    MB,
    REPO,
    TWISTD,
    ServerProcess,
    Workspace,
    machineLine,
    peakRss,
    runBenchmark,
    startServer,
    verdict,
)

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath

from backupremote.client.config import loadClientConfig
from backupremote.client.schedules.model import Daily, Schedule
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.store import SQLiteClientStore
from backupremote.protocol.databases import DatabaseConfigInput
from tests.databases.servers import _Daemon

UTC = timezone.utc
#: rows of 1 KB in each database: a small backup, the control plane is measured
ROWS = 200


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))]


def makeDatabase(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)")
    db.executemany("INSERT INTO t (data) VALUES (?)", ((os.urandom(1024),) for _ in range(ROWS)))
    db.commit()
    db.close()


async def sleep(seconds: float) -> None:
    await deferLater(reactor, seconds, lambda: None)


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


async def startServers(workspace: Workspace, count: int, roots: Path) -> list[ServerProcess]:
    extra = f'[databases]\nsqlite_roots = ["{roots}"]\n'
    servers: list[ServerProcess] = []
    # a few at a time: each start is CPU-bound (imports, key, certificate)
    for first in range(0, count, 5):
        servers += await gatherResults([
            Deferred.fromCoroutine(startServer(workspace, extra, name=f"s{i}"))
            for i in range(first, min(count, first + 5))])
    return servers


async def addDatabases(workspace: Workspace, server: ServerProcess, index: int, count: int,
                       roots: Path) -> list[str]:
    client = server.client(workspace)
    ids = []
    for j in range(count):
        path = roots / f"s{index}-db{j}.sqlite3"
        makeDatabase(path)
        ids.append((await client.createDatabaseConfig(DatabaseConfigInput(
            name=f"db{j}", engine="sqlite", path=str(path)))).id)
    await client.close()
    return ids


def writeClientToml(folder: Path, servers: list[ServerProcess]) -> Path:
    lines = ['[client]', f'id = "{loadClientConfig(FilePath(str(servers[0].clientConfig))).clientId}"',
             'log_file = "logs/client.jsonl"', '']
    for i, server in enumerate(servers):
        config = loadClientConfig(FilePath(str(server.clientConfig)))
        lines += [f'[servers.s{i}]', f'address = "127.0.0.1:{server.port}"',
                  f'fingerprints = {json.dumps(list(config.fingerprints))}',
                  f'secret_file = "{config.secretFile.path}"',
                  f'license_file = "{config.licenseFile.path}"', '']
    folder.mkdir(mode=0o700)
    path = folder / "client.toml"
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


def executeLines(server: ServerProcess) -> list[tuple[str, float, bool]]:
    """(runId, log time, duplicate) of each executeBackup line of a server's JSON log."""
    found = []
    log = server.serverDir / "logs" / "server.jsonl"
    for line in log.read_bytes().splitlines():
        event = json.loads(line.strip(b"\x1e"))
        if str(event.get("log_format", "")).endswith("executeBackup {runId}: {state}{duplicate}"):
            found.append((event["runId"], event["log_time"], bool(event.get("duplicate"))))
    return found


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy samples of C{pid} for C{seconds} (speedscope JSON: every thread in time order,
    idle samples too, so a thread's timeline can be read from it)."""
    return subprocess.Popen(
        [shutil.which("py-spy") or str(Path(TWISTD).parent / "py-spy"), "record", "--pid",
         str(pid), "--duration", str(int(seconds)), "--rate", "250", "--format", "speedscope",
         "--threads", "--idle", "--nonblocking", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def readClient(path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    db = sqlite3.connect(path)
    try:
        db.row_factory = sqlite3.Row
        fires = [dict(r) for r in db.execute("SELECT * FROM schedule_fires")]
        states = {state: n for state, n in db.execute(
            "SELECT state, count(*) FROM jobs GROUP BY state")}
        return fires, states
    finally:
        db.close()


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def main(workspace: Workspace, args: argparse.Namespace) -> int:
    print(machineLine())
    print(f"uptime before: {uptime()}")
    roots = workspace.path("databases")
    roots.mkdir()
    began = clock.monotonic()
    servers = await startServers(workspace, args.servers, roots)
    print(f"{len(servers)} servers started in {clock.monotonic() - began:.1f} s")
    perServer = -(-args.schedules // args.servers)
    databases = await gatherResults([
        Deferred.fromCoroutine(addDatabases(workspace, server, i, perServer, roots))
        for i, server in enumerate(servers)])

    clientDir = workspace.path("client")
    config = writeClientToml(clientDir, servers)
    store = SQLiteClientStore.inFolder(FilePath(str(clientDir)), reactor)
    now = datetime.now(UTC)
    fire = (now + timedelta(seconds=args.lead + 60)).replace(second=0, microsecond=0)
    schedules = ScheduleStore(store)
    for n in range(args.schedules):
        i, j = n % args.servers, n // args.servers
        await schedules.add(Schedule(
            id=str(uuid.uuid4()), name=f"s{i}-db{j}", rule=Daily((time(fire.hour, fire.minute),)),
            zone="UTC", database=databases[i][j], server=f"s{i}"), now)
    await store.close()
    print(f"{args.schedules} schedules on {args.servers} servers, all due at "
          f"{fire.isoformat()} ({(fire - datetime.now(UTC)).total_seconds():.0f} s from now)")

    env = dict(os.environ, PYTHONPATH=str(REPO))
    daemon = _Daemon.spawn(
        "backupremote-client", [TWISTD, "-n", "--pidfile=", "backupremote-client", "--config",
                                str(config)],
        env, str(clientDir), str(clientDir / "twistd.out"))
    workspace.addCleanup(daemon.stop)
    pid = daemon.pid
    assert pid is not None
    peak = 0
    deadline = fire.timestamp() + args.timeout
    states: dict[str, int] = {}
    released = None
    profilers: list[subprocess.Popen[bytes]] = []
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
        await sleep(max(0.0, fire.timestamp() - 3 - clock.time()))
        profilers = [profile(pid, 10, args.profile / "client.json"),
                     profile(servers[0].pid, 10, args.profile / "server-s0.json")]
    while clock.time() < deadline:
        if daemon.exited:
            raise RuntimeError(f"the client daemon exited: {(clientDir / 'twistd.out').read_text()}")
        peak = max(peak, peakRss(pid))
        if clock.time() > fire.timestamp():
            _, states = readClient(clientDir / "client.sqlite3")
            if sum(states.get(s, 0) for s in ("released", "failed", "cancelled")) \
                    >= args.schedules:
                released = clock.time() - fire.timestamp()
                break
        await sleep(0.5)
    peak = max(peak, peakRss(pid))
    print(f"uptime after: {uptime()}")
    for profiler in profilers:
        profiler.wait()
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
        shutil.copy(clientDir / "logs" / "client.jsonl", args.logs / "client.jsonl")
        for i, server in enumerate(servers):
            shutil.copy(server.serverDir / "logs" / "server.jsonl",
                        args.logs / f"server-s{i}.jsonl")

    fires, states = readClient(clientDir / "client.sqlite3")
    outcomes: dict[str, int] = {}
    for row in fires:
        outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
    atFire = [row for row in fires if stamp(row["fireTime"]) == fire.timestamp()]
    recorded = [stamp(row["recordedAt"]) - fire.timestamp() for row in atFire]
    fireOf = {row["runId"]: stamp(row["fireTime"]) for row in fires}
    arrivals: dict[str, float] = {}
    duplicates = 0
    for server in servers:
        for runId, at, duplicate in executeLines(server):
            if duplicate:
                duplicates += 1
            elif runId in fireOf:
                arrivals[runId] = at
    delays = [arrivals[r] - fireOf[r] for r in arrivals]
    missed = args.schedules - len([r for r in atFire if r["outcome"] == "started"])
    print(f"fires recorded: {len(fires)} {outcomes}; at the due minute: {len(atFire)}; "
          f"not started: {missed}")
    print(f"executeBackup reached the servers for {len(arrivals)} of {args.schedules} slots "
          f"({duplicates} duplicate commands, answered by the servers' idempotency)")
    if delays:
        p99 = percentile(delays, 0.99)
        print(f"start delay, fire time -> server's executeBackup line: p50 "
              f"{percentile(delays, 0.5):.3f} s, p99 {p99:.3f} s, max {max(delays):.3f} s "
              f"(target p99 < 1 s: {verdict(p99 < 1.0)})")
    if recorded:
        print(f"fire time -> the client's record of the fire: p50 {percentile(recorded, 0.5):.3f}"
              f" s, p99 {percentile(recorded, 0.99):.3f} s, max {max(recorded):.3f} s")
    print(f"jobs by state: {states}; "
          + (f"all ended {released:.1f} s after the fire" if released is not None
             else f"not all ended within {args.timeout} s"))
    print(f"client daemon peak RSS: {peak / MB:.1f} MB (target < 120 MB: "
          f"{verdict(peak < 120 * MB)})")
    print(f"no fire missed: {verdict(missed == 0 and len(arrivals) == args.schedules)}")
    return 0


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--schedules", type=int, default=200)
    parser.add_argument("--lead", type=int, default=45,
                        help="at least this many seconds between the daemon's start and the fire")
    parser.add_argument("--timeout", type=int, default=900,
                        help="seconds after the fire to wait for every job to end")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="py-spy (in the venv) the client daemon and server s0 from 3 s before "
                        "the fire for 10 s, into DIR (it slows both: not for the figures)")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR",
                        help="keep the JSON logs of the client daemon and of every server in DIR")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse()
    runBenchmark(lambda workspace: main(workspace, arguments), Workspace("scheduler"))
