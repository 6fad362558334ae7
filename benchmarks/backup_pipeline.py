"""
Benchmark: a PostgreSQL backup through the real server against the shell.

Starts a private PostgreSQL (tests/databases/servers.py), fills it with one
of two datasets, starts a real
``twistd backupremote-server`` in its own process, and then, for each of
``--runs`` pairs, times:

  datasets (--dataset):
    pgbench    ``pgbench -i -s SCALE`` (scale 60 is about 1 GB on disk); its
               rows are mostly the same few characters: zstd -3 makes ~190:1;
    realistic  an "orders" table of SCALE x 25,000 rows (scale 60: 1.5 million
               rows, about 1 GB on disk) of varied text (phrases of a
               4,096-word vocabulary), numbers, timestamps, emails and JSON,
               generated in SQL after setseed(): the same rows every time on
               the same PostgreSQL; zstd -3 makes about 4-6:1, as real data.

  server  executeBackup -> the backupComplete event, with compression zstd
          level 3 on all cores, sha256, verification "stream", format plain;
  shell   the same steps in bash:
            pg_dump -Fp ... | zstd -3 -T0 | tee >(sha256sum > f.sha256) > f
            zstd -t f

The two alternate (which one goes first alternates too), so both see the
same machine, after one untimed run of each (a warm-up). Printed: each pair, the median ratio server/shell (target
<= 1.05), the server's peak RSS during its runs (VmHWM of the twistd process
only, children excluded; target < 100 MB) and the artifact sizes. Each
artifact is released after its run; everything is removed at exit, Ctrl-C
included. Exits non-zero if a run fails, not when a target is missed.

    .venv/bin/python benchmarks/backup_pipeline.py              # scale 60, 5 pairs
    .venv/bin/python benchmarks/backup_pipeline.py --scale 240  # the 4x larger case
    .venv/bin/python benchmarks/backup_pipeline.py --dataset realistic [--scale 240]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import uuid
from pathlib import Path

from _common import (
    MB,
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
from backupremote.protocol.errors import BackupRemoteError
from backupremote.protocol.options import BackupOptions
from tests.databases.servers import (
    checkProcess,
    postgresBinDir,
    runProcess,
    startPostgreSQL,
)

RATIO_TARGET = 1.05  # issue 16: on both datasets, at 1 GB and 4 GB
RSS_TARGET = 100 * MB

OPTIONS = BackupOptions(format="plain", compression="zstd", level=3, threads=0,
                        checksum="sha256", verification="stream")

# $1 pg_dump, $2 host, $3 port, $4 user, $5 database, $6 output file; PGPASSWORD in env.
# The last line of its output gives the times of its two steps (not part of the steps).
SHELL = """\
set -o pipefail
started=$EPOCHREALTIME
"$1" --no-password -Fp -h "$2" -p "$3" -U "$4" -d "$5" \\
  | zstd -q -3 -T0 | tee >(sha256sum > "$6.sha256") > "$6"
dumped=$EPOCHREALTIME
zstd -q -t "$6"
echo "stages $started $dumped $EPOCHREALTIME"
"""


def parseArguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time a PostgreSQL backup through the real backupremote server "
                    "(pg_dump -Fp | zstd -3 -T0, sha256, stream verification) against the "
                    "same steps in bash, in alternating pairs.",
        epilog="Targets: median ratio server/shell <= 1.05; server peak RSS < 100 MB.")
    parser.add_argument("--dataset", choices=("pgbench", "realistic"), default="pgbench",
                        help="pgbench (compresses ~190:1) or realistic (varied text, numbers, "
                             "timestamps, JSON; compresses ~4-6:1)")
    parser.add_argument("--scale", type=int, default=60,
                        help="pgbench scale factor, or realistic's 25,000 rows per unit "
                             "(default 60: about 1 GB on disk; 240 is the 4x larger case)")
    parser.add_argument("--runs", type=int, default=5,
                        help="paired runs, at least 3 (default 5)")
    arguments = parser.parse_args()
    if arguments.runs < 3:
        parser.error("--runs must be at least 3")
    if arguments.scale < 1:
        parser.error("--scale must be at least 1")
    return arguments


#: rows of the realistic dataset per --scale unit (scale 60: about 1 GB on disk)
REALISTIC_ROWS = 25_000
#: rows per INSERT statement (one session: setseed() holds for all of them)
REALISTIC_BATCH = 250_000

# A vocabulary of 4,096 pseudo-words made of syllables, 20,000 phrases of
# 4 to 16 of them (words skewed towards the frequent, as in text), then the
# orders: every value from random() after setseed(), so the same PostgreSQL
# makes the same rows.
REALISTIC_SETUP = """\
SELECT setseed(0.20261129);
CREATE TABLE vocab AS
  SELECT i, s[1 + floor(random() * 40)::int] || s[1 + floor(random() * 40)::int]
            || CASE WHEN random() < 0.6 THEN s[1 + floor(random() * 40)::int] ELSE '' END AS w
  FROM generate_series(1, 4096) AS i,
       (SELECT ARRAY['ka','ro','mi','te','lu','sa','ven','dor','li','ne','ta','po','ri','gel',
                     'man','ste','ol','qui','bra','fe','sun','der','al','mo','ix','par','en',
                     'tor','gu','ha','ber','ci','dy','ex','lo','nu','pri','sch','wa','zel'] AS s) AS syllables;
CREATE UNIQUE INDEX ON vocab (i);
CREATE TABLE phrases AS
  SELECT p AS id, string_agg(v.w, ' ' ORDER BY x.n) AS text
  FROM (SELECT p, n, 1 + floor(4096 * power(random(), 2.5))::int AS wi
        FROM generate_series(1, 20000) AS p, LATERAL generate_series(1, 4 + p % 13) AS n) AS x
  JOIN vocab AS v ON v.i = x.wi
  GROUP BY p;
CREATE UNIQUE INDEX ON phrases (id);
CREATE TABLE orders (
  id bigint PRIMARY KEY,
  created_at timestamptz NOT NULL,
  customer_id integer NOT NULL,
  amount numeric(12, 2) NOT NULL,
  currency char(3) NOT NULL,
  status text NOT NULL,
  email text NOT NULL,
  note text,
  payload jsonb NOT NULL
);
"""

REALISTIC_INSERT = """\
INSERT INTO orders
SELECT r.g,
       date_trunc('second', timestamptz '2021-01-01 00:00:00+00' + r.t * interval '1500 days'),
       r.customer,
       round((power(r.a, 2) * 5000)::numeric, 2),
       (ARRAY['EUR','USD','GBP','CHF','SEK'])[1 + floor(r.c * 5)::int],
       (ARRAY['new','paid','shipped','delivered','refunded','cancelled'])[1 + floor(r.s * 6)::int],
       v1.w || '.' || v2.w || (r.customer % 97) || '@'
         || (ARRAY['example.com','mail.test','corp.example','shop.test'])[1 + floor(r.d * 4)::int],
       CASE WHEN r.s < 0.8 THEN p.text END,
       jsonb_build_object(
         'ip', '10.' || floor(r.i1 * 4) || '.' || floor(r.i2 * 64) || '.' || floor(r.i3 * 256),
         'agent', (ARRAY['Mozilla/5.0 (X11; Linux x86_64)', 'Mozilla/5.0 (Windows NT 10.0; Win64)',
                         'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2)', 'curl/8.5.0',
                         'okhttp/4.12.0'])[1 + floor(r.u * 5)::int],
         'items', jsonb_build_array(
           jsonb_build_object('sku', 'SKU-' || lpad(floor(r.k1 * 50000)::text, 5, '0'),
                              'qty', 1 + floor(r.q * 4)::int,
                              'price', round((r.k2 * 200)::numeric, 2))),
         'shipping', jsonb_build_object(
           'method', (ARRAY['standard','express','pickup'])[1 + floor(r.c * 3)::int],
           'country', (ARRAY['DE','FR','GB','US','CH','SE','NL','IT','ES','AT'])[1 + floor(r.d * 10)::int],
           'city', (ARRAY['Berlin','Paris','London','New York','Zurich','Stockholm','Amsterdam',
                          'Milan','Madrid','Vienna','Hamburg','Lyon','Manchester','Boston',
                          'Geneva','Gothenburg'])[1 + floor(r.i2 * 16)::int]),
         'locale', (ARRAY['de-DE','en-GB','en-US','fr-FR','sv-SE','it-IT'])[1 + floor(r.u * 6)::int],
         'channel', (ARRAY['web','app','api','store'])[1 + floor(r.i1 * 4)::int],
         'version', 3,
         'score', round(r.sc::numeric, 2),
         'tags', jsonb_build_array(v2.w, v3.w),
         'confirmed', r.s > 0.3)
FROM (SELECT g, random() AS t, 1 + floor(200000 * power(random(), 2))::int AS customer, random() AS a,
             random() AS c, random() AS s, random() AS d, random() AS i1, random() AS i2,
             random() AS i3, random() AS u, random() AS k1, random() AS q, random() AS k2,
             random() AS sc, 1 + floor(4096 * power(random(), 2))::int AS w1,
             1 + floor(4096 * power(random(), 2))::int AS w2,
             1 + floor(4096 * power(random(), 2))::int AS w3,
             1 + floor(random() * 20000)::int AS ph
      FROM generate_series({first}, {last}) AS g) AS r
JOIN vocab AS v1 ON v1.i = r.w1
JOIN vocab AS v2 ON v2.i = r.w2
JOIN vocab AS v3 ON v3.i = r.w3
JOIN phrases AS p ON p.id = r.ph;
"""


def realisticSQL(rows: int) -> str:
    """The realistic dataset's SQL: one psql session (setseed holds for every statement)."""
    batches = [REALISTIC_INSERT.format(first=first, last=min(first + REALISTIC_BATCH - 1, rows))
               for first in range(1, rows + 1, REALISTIC_BATCH)]
    return REALISTIC_SETUP + "".join(batches) + "DROP TABLE phrases, vocab;\nANALYZE orders;\n"


async def preparePostgreSQL(workspace: Workspace, scale: int,
                            dataset: str = "pgbench") -> tuple:
    started = time.monotonic()
    server = await startPostgreSQL(workspace)
    if dataset == "pgbench":
        how = f"pgbench -i -s {scale}"
        await checkProcess(
            [os.path.join(server.binDir, "pgbench"), "-i", "-q", "-s", str(scale),
             "-h", server.host, "-p", str(server.port), "-U", server.superuser,
             server.database],
            server.env(server.superuserPassword), timeout=3600)
    else:
        rows = scale * REALISTIC_ROWS
        how = f"realistic dataset, {rows:,} rows"
        await checkProcess(server.psqlArgs(server.superuser, server.database),
                           server.env(server.superuserPassword), realisticSQL(rows),
                           timeout=7200)
    size = int((await server.sql(
        f"SELECT pg_database_size('{server.database}')")).strip())
    print(f"PostgreSQL {server.port}: {how} in "
          f"{time.monotonic() - started:.1f} s, database {mb(size)} on disk")
    return server, size


async def serverRun(client, backend, configId: str) -> dict:
    """executeBackup -> backupComplete; the server's peak RSS and CPU during it."""
    runId = str(uuid.uuid4())
    resetPeakRss(backend.pid)
    cpuBefore = cpuSeconds(backend.pid)
    completed: list[float] = []

    def onEvent(event) -> None:
        if event.kind == "complete" and not completed:
            completed.append(time.monotonic())

    started = time.monotonic()
    await client.executeBackup(runId, configId, OPTIONS)
    status = await client.followRun(runId, onEvent)
    if status.state != "completed" or not completed:
        raise RuntimeError(f"server run {runId} ended {status.state}: "
                           f"{status.errorCode} {status.errorMessage}")
    seconds = completed[0] - started
    peak = peakRss(backend.pid)
    cpuAfter = cpuSeconds(backend.pid)
    stages = {t.stage: (t.endedAt - t.startedAt).total_seconds()
              for t in status.stageTimings if t.endedAt is not None}
    released = await client.releaseArtifact(runId)
    if not released or backend.stagingFolder(runId) is not None:
        raise RuntimeError(f"run {runId}: the staging was not removed by releaseArtifact")
    return {"seconds": seconds, "size": status.artifact.sizeBytes, "peak": peak,
            "stages": stages, "cpuSelf": cpuAfter[0] - cpuBefore[0],
            "cpuChildren": cpuAfter[1] - cpuBefore[1]}


async def plainDumpSize(database) -> int:
    """Bytes of the plain dump (pg_dump -Fp | wc -c; untimed): what the compressor is given."""
    argv = ["bash", "-c", '"$1" --no-password -Fp -h "$2" -p "$3" -U "$4" -d "$5" | wc -c',
            "bash", os.path.join(database.binDir, "pg_dump"), database.host, str(database.port),
            database.superuser, database.database]
    result = await runProcess(argv, database.env(database.superuserPassword), timeout=7200)
    if not result.ok:
        raise RuntimeError(f"pg_dump | wc -c failed ({result.code}): {result.err[-2000:]}")
    return int(result.out.split()[0])


def childrenCpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def shellRun(workspace: Workspace, database, index: int) -> dict:
    out = workspace.path(f"shell-{index}.sql.zst")
    argv = ["bash", "-c", SHELL, "bash", os.path.join(database.binDir, "pg_dump"),
            database.host, str(database.port), database.superuser, database.database, str(out)]
    cpuBefore = childrenCpu()
    started = time.monotonic()
    result = await runProcess(argv, database.env(database.superuserPassword), timeout=7200)
    seconds = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"the shell pipeline failed ({result.code}): {result.err[-2000:]}")
    digest = Path(f"{out}.sha256").read_text().split()
    if not digest:
        raise RuntimeError("the shell pipeline wrote no checksum")
    size = out.stat().st_size
    out.unlink()
    Path(f"{out}.sha256").unlink()
    started, dumped, ended = (float(x) for x in result.out.split()[-3:])
    return {"seconds": seconds, "size": size, "cpu": childrenCpu() - cpuBefore,
            "stages": {"dump": dumped - started, "test": ended - dumped}}


async def main(workspace: Workspace, arguments: argparse.Namespace) -> int:
    print(machineLine())
    print(f"working in {workspace.root}; PostgreSQL binaries from {postgresBinDir()}")
    database, dbSize = await preparePostgreSQL(workspace, arguments.scale, arguments.dataset)
    dumpSize = await plainDumpSize(database)
    print(f"plain dump (pg_dump -Fp): {mb(dumpSize)}")
    backend = await startServer(workspace)
    idle = currentRss(backend.pid)
    print(f"backupremote server: pid {backend.pid}, port {backend.port}, "
          f"RSS {mb(idle)} after start-up")
    client = backend.client(workspace)
    config = await client.createDatabaseConfig(DatabaseConfigInput(
        name="pgbench", engine="postgresql", host=database.host, port=database.port,
        database=database.database, user=database.superuser,
        password=database.superuserPassword, backup=OPTIONS))

    # Untimed: the first dump of a fresh pgbench database, and a new server's
    # first run, are slower than the ones after them (measured 20 s where
    # the next took 14 s); whichever side went first would pay for it.
    warmServer = await serverRun(client, backend, config.id)
    warmShell = await shellRun(workspace, database, 0)
    print(f"warm-up (untimed): server {warmServer['seconds']:.2f} s, "
          f"shell {warmShell['seconds']:.2f} s")

    print("\nothers: CPU s used by other processes during the pair (noise); CPU s: the server "
          "process itself + its children\n(pg_dump, zstd, ...), and the shell's whole "
          "pipeline; PostgreSQL's own backend is in neither.")
    print(f"{'pair':>4} {'first':>6} {'others':>7} {'server s':>9} {'shell s':>8} {'ratio':>6}"
          f" {'server CPU s':>13} {'shell CPU s':>12} {'server RSS':>11}   stages (s)")
    pairs = []
    meter = OthersMeter()
    watched = [backend.pid, database.pid]  # PostgreSQL's backends count as ours too
    for index in range(1, arguments.runs + 1):
        serverFirst = index % 2 == 1
        try:
            if serverFirst:
                srv = await observed(meter, watched, serverRun(client, backend, config.id))
                sh = await observed(meter, watched, shellRun(workspace, database, index))
            else:
                sh = await observed(meter, watched, shellRun(workspace, database, index))
                srv = await observed(meter, watched, serverRun(client, backend, config.id))
        except BackupRemoteError as error:
            raise RuntimeError(f"pair {index}: {error.code}: {error.message}") from None
        pairs.append((srv, sh))
        stages = ", ".join(f"{k} {v:.2f}" for k, v in srv["stages"].items()
                           if k in ("dump", "verification"))
        stages += f" | shell: dump {sh['stages']['dump']:.2f}, zstd -t {sh['stages']['test']:.2f}"
        serverCpu = f"{srv['cpuSelf']:.2f}+{srv['cpuChildren']:.2f}"
        others = srv["others"] + sh["others"]
        print(f"{index:>4} {'server' if serverFirst else 'shell':>6} {others:>7.1f}"
              f" {srv['seconds']:>9.2f} {sh['seconds']:>8.2f}"
              f" {srv['seconds'] / sh['seconds']:>6.3f} {serverCpu:>13} {sh['cpu']:>12.2f}"
              f" {mb(srv['peak']):>11}   {stages}")

    serverTimes = [srv["seconds"] for srv, _ in pairs]
    shellTimes = [sh["seconds"] for _, sh in pairs]
    medianRatio = median([a / b for a, b in zip(serverTimes, shellTimes, strict=True)])
    peak = max(srv["peak"] for srv, _ in pairs)
    srv, sh = pairs[-1]
    print(f"\ndatabase: {arguments.dataset} scale {arguments.scale}, {mb(dbSize)} on disk; "
          f"plain dump {mb(dumpSize)}; artifact {mb(srv['size'])} (server), {mb(sh['size'])} "
          f"(shell): zstd -3 makes {dumpSize / srv['size']:.1f}:1")
    print(f"median server {median(serverTimes):.2f} s "
          f"({dbSize / MB / median(serverTimes):.0f} MB/s of database on disk), "
          f"median shell {median(shellTimes):.2f} s; best server {min(serverTimes):.2f} s, "
          f"best shell {min(shellTimes):.2f} s (ratio of the bests {min(serverTimes) / min(shellTimes):.3f})")
    print(f"median ratio server/shell: {medianRatio:.3f} (target <= {RATIO_TARGET:.2f}): "
          f"{verdict(medianRatio <= RATIO_TARGET)}")
    print(quietLine([(srv["seconds"] / sh["seconds"], srv["others"] + sh["others"],
                      srv["seconds"] + sh["seconds"]) for srv, sh in pairs], "ratio"))
    print(f"server peak RSS during the runs: {mb(peak)} (after start-up {mb(idle)}; "
          f"target < {mb(RSS_TARGET)}): {verdict(peak < RSS_TARGET)}")
    print(meter.summary())
    print(machineLine())
    return 0


if __name__ == "__main__":
    options = parseArguments()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("backup"))
