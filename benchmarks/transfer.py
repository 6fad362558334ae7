"""
Benchmark: downloading a 1 GiB artifact through the real server, with the
client library and with the CLI, against a plain Twisted TLS stream of the
same file, with ``scp`` from a local ``sshd`` beside them.

Makes a SQLite database of about ``--size-mib`` MiB of random blobs, starts
a real ``twistd backupremote-server`` in its own process and backs it up
(compression "none") so that the server stages a ~1 GiB artifact of its own.
Then ``--runs`` rounds of four runs, in an order that rotates each round:

  real   a client process (benchmarks/_transfer_peers.py download) connects
         over TLS to 127.0.0.1, authenticates and runs
         ``BackupRemoteClient.download`` (manifest, chunk hashes, windowed
         chunk stream, per-chunk and whole-file checks, fsync, rename);
  cli    ``backupremote --config C download RUNID DIR``, pip's console script
         against a bytecode-compiled copy of this tree (as cli_startup.py runs
         it), the same work through the command a user types (its job record
         in the client store included);
  plain  a plain Twisted server process sends the same staged file with
         ``FileSender`` over an ``ssl:`` endpoint (same certificate) to a
         receiver process that writes it to disk and fsyncs it;
  scp    ``scp`` (OpenSSH's defaults) of the staged file from a private
         ``sshd`` on 127.0.0.1, then an fsync of the copy (timed: the others
         fsync too).

Ratios per round, as throughputs (higher is better for the first named):
library = real/plain with both timed inside their processes (start-up and
imports not counted, as before); cli = cli/plain with both timed as whole
processes, spawn to reap; cli/scp and real/scp the same way beside them.
Targets (issue 16): median of the library and the cli ratios at least 0.9;
peak RSS (VmHWM) of the server and of each client under 100 MB. Everything
is removed at exit, Ctrl-C included. Exits non-zero if a run fails, not
when a target is missed.

    .venv/bin/python benchmarks/transfer.py            # 1 GiB, 5 rounds
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import random
import shutil
import sqlite3
import time
import uuid
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

from backup_pipeline import childrenCpu
from cli_startup import CONSOLE_SCRIPT, environment, installedCopy

from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.protocol.options import BackupOptions
from tests.databases.servers import _Daemon, freePort, runProcess

RATIO_TARGET = 0.9
RSS_TARGET = 100 * MB
PEERS = str(Path(__file__).resolve().with_name("_transfer_peers.py"))
PEER_ENV = dict(os.environ, PYTHONPATH=str(REPO))
#: Each row: a 1,000,000-byte blob, which SQLite (default 4 KiB pages) keeps in
#: 244 overflow pages plus about 1.6 KB of a leaf page: about 1,001,100 bytes on disk.
BLOB = 1_000_000
ROW_ON_DISK = 1_001_100


def parseArguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Download a staged artifact through the real backupremote server "
                    "(separate processes, TLS on 127.0.0.1) with the client library and with "
                    "the CLI, against a plain Twisted FileSender TLS stream of the same file "
                    "and scp from a local sshd, in rounds whose order rotates.",
        epilog="Targets: median throughput ratios library/plain and cli/plain >= 0.9; peak "
               "RSS < 100 MB for the server and each client.")
    parser.add_argument("--size-mib", type=int, default=1024,
                        help="artifact size in MiB, about (default 1024: 1 GiB)")
    parser.add_argument("--runs", type=int, default=5,
                        help="rounds (one run of each side), at least 3 (default 5)")
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
    """A peer process's own figures, and C{whole}: its seconds from spawn to reap."""
    started = time.monotonic()
    result = await runProcess([PYTHON, PEERS, *args], PEER_ENV, timeout=1800)
    whole = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"{args[0]} failed ({result.code}): {result.err[-3000:]}")
    return json.loads(result.out.strip().splitlines()[-1]) | {"whole": whole}


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


async def cliRun(workspace: Workspace, backend, script: Path, env: dict[str, str],
                 runId: str, size: int, index: int) -> dict:
    """
    ``backupremote --config C download RUNID DIR``, whole process; the file is checked and
    removed. Each run has a client store of its own (C{data_dir}), made beforehand (untimed,
    by ``backupremote runs list``): a store remembers where a run was downloaded, and would
    refuse another folder for it or find the file there already.
    """
    base = backend.clientConfig
    config = base.with_name(f"client-cli-{index}.toml")
    config.write_text(base.read_text().replace(
        "[client]\n", f'[client]\ndata_dir = "cli-store-{index}"\n', 1))
    prepared = await runProcess([PYTHON, str(script), "--config", str(config), "runs", "list"], env)
    if not prepared.ok:
        raise RuntimeError(f"`backupremote runs list` failed ({prepared.code}): {prepared.err[-2000:]}")
    folder = workspace.path(f"cli-{index}")
    resetPeakRss(backend.pid)
    cpuBefore, serverCpuBefore = childrenCpu(), cpuSeconds(backend.pid)[0]
    rusage = workspace.path(f"cli-{index}.maxrss")
    started = time.monotonic()
    # /usr/bin/time only waits for the command and writes its peak RSS (KiB) to a file
    result = await runProcess(["/usr/bin/time", "-o", str(rusage), "-f", "%M", PYTHON,
                               str(script), "--config", str(config), "download", runId,
                               str(folder)], env, timeout=1800)
    whole = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"the CLI's download failed ({result.code}): {result.err[-3000:]}")
    files = [path for path in folder.iterdir() if path.is_file()]
    if len(files) != 1 or files[0].stat().st_size != size:
        raise RuntimeError(f"the CLI's download left {files} in {folder}, not one file of {size}")
    figures = {"whole": whole, "seconds": whole, "cpu": childrenCpu() - cpuBefore,
               "peakRss": int(rusage.read_text().split()[-1]) * 1024,
               "serverPeak": peakRss(backend.pid),
               "serverCpu": cpuSeconds(backend.pid)[0] - serverCpuBefore}
    shutil.rmtree(folder)
    return figures


async def scpRun(workspace: Workspace, ssh: dict, staged: Path, size: int, index: int) -> dict:
    """``scp`` of the staged file from the local sshd, then an fsync of the copy: whole, timed."""
    out = workspace.path(f"scp-{index}.bin")
    cpuBefore = childrenCpu()
    started = time.monotonic()
    result = await runProcess(
        ["scp", "-q", "-i", ssh["key"], "-P", str(ssh["port"]), "-o", "BatchMode=yes",
         "-o", f"UserKnownHostsFile={ssh['knownHosts']}",
         f"{ssh['user']}@127.0.0.1:{staged}", str(out)], timeout=1800)
    if result.ok:
        descriptor = os.open(out, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    whole = time.monotonic() - started
    if not result.ok:
        raise RuntimeError(f"scp failed ({result.code}): {result.err[-3000:]}")
    if out.stat().st_size != size:
        raise RuntimeError(f"scp copied {out.stat().st_size} bytes, not {size}")
    out.unlink()
    return {"whole": whole, "seconds": whole, "cpu": childrenCpu() - cpuBefore}


async def startSshd(workspace: Workspace) -> dict:
    """A private sshd on 127.0.0.1 (its own host key; our key only), for scp to compare with."""
    folder = workspace.path("sshd")
    folder.mkdir(mode=0o700)
    for name in ("host", "user"):
        result = await runProcess(["ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                                   "-f", str(folder / name)])
        if not result.ok:
            raise RuntimeError(f"ssh-keygen failed: {result.err}")
    (folder / "authorized_keys").write_text((folder / "user.pub").read_text())
    port = freePort()
    (folder / "known_hosts").write_text(
        f"[127.0.0.1]:{port} {(folder / 'host.pub').read_text()}")
    (folder / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\nHostKey {folder / 'host'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile none\nStrictModes no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # its privilege-separation folder
    sshd = _Daemon.spawn("sshd", [shutil.which("sshd") or "/usr/sbin/sshd", "-D", "-e",
                                  "-f", str(folder / "sshd_config")],
                         dict(os.environ), str(folder), str(folder / "sshd.log"))
    workspace.addCleanup(sshd.stop)
    await sshd.waitUntilReady(port, extraLog=str(folder / "sshd.log"))
    return {"port": port, "key": str(folder / "user"), "knownHosts": str(folder / "known_hosts"),
            "user": pwd.getpwuid(os.getuid()).pw_name, "daemon": sshd}


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


SIDES = ("real", "cli", "plain", "scp")


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
    ssh = await startSshd(workspace)
    script = workspace.path("backupremote-console-script")
    script.write_text(CONSOLE_SCRIPT)
    cliEnv = environment(installedCopy(workspace))
    print("cli: backupremote --config C download RUNID DIR; scp: "
          f"scp -q -i KEY -P {ssh['port']} USER@127.0.0.1:STAGED OUT, then fsync OUT")

    runs = {
        "real": lambda index: realRun(workspace, backend, runId, size, index),
        "cli": lambda index: cliRun(workspace, backend, script, cliEnv, runId, size, index),
        "plain": lambda index: plainRun(workspace, sender, port, size, sha256, index),
        "scp": lambda index: scpRun(workspace, ssh, staged, size, index),
    }
    pids = {"real": [backend.pid], "cli": [backend.pid], "plain": [sender.pid],
            "scp": [ssh["daemon"].pid]}
    for side in SIDES:  # warm-up, untimed: the page cache, the CLI's first store
        await runs[side](0)

    print("\nothers: CPU s used by other processes during the round (noise); seconds: real and "
          "plain timed inside their processes, [whole process] beside;\nCPU s: receiving "
          "side + sending side; RSS: peak of each process during the run (receiver, sender).")
    print(f"{'round':>5} {'order':>20} {'others':>6} {'real s':>13} {'cli s':>6} {'plain s':>13}"
          f" {'scp s':>6} {'lib':>6} {'cli':>6} {'cli/scp':>7} {'real CPU':>9} {'cli CPU':>9}"
          f" {'plain CPU':>9} {'scp CPU':>7} {'real RSS':>8} {'cli RSS':>8} {'plain RSS':>9}")
    rounds = []
    meter = OthersMeter()
    for index in range(1, arguments.runs + 1):
        shift = (index - 1) % len(SIDES)
        order = SIDES[shift:] + SIDES[:shift]
        done = {}
        others = 0.0
        for side in order:
            done[side] = await observed(meter, pids[side], runs[side](index))
            others += done[side]["others"]
        real, cli, plain, scp = (done[side] for side in SIDES)
        figures = {
            "library": plain["seconds"] / real["seconds"],
            "cli": plain["whole"] / cli["whole"],
            "cliScp": scp["whole"] / cli["whole"],
            "realScp": scp["whole"] / real["whole"],
            "others": others,
            "wall": sum(done[side]["whole"] for side in SIDES),
        }
        rounds.append((done, figures))
        print(f"{index:>5} {','.join(order):>20} {others:>6.1f}"
              f" {real['seconds']:>5.2f} [{real['whole']:>5.2f}] {cli['whole']:>6.2f}"
              f" {plain['seconds']:>5.2f} [{plain['whole']:>5.2f}] {scp['whole']:>6.2f}"
              f" {figures['library']:>6.3f} {figures['cli']:>6.3f} {figures['cliScp']:>7.3f}"
              f" {pairOf(real['cpu'], real['serverCpu'], '.2f'):>9}"
              f" {pairOf(cli['cpu'], cli['serverCpu'], '.2f'):>9}"
              f" {pairOf(plain['cpu'], plain['serverCpu'], '.2f'):>9} {scp['cpu']:>7.2f}"
              f" {pairOf(real['peakRss'] / MB, real['serverPeak'] / MB, '.0f'):>8}"
              f" {pairOf(cli['peakRss'] / MB, cli['serverPeak'] / MB, '.0f'):>8}"
              f" {pairOf(plain['peakRss'] / MB, plain['serverPeak'] / MB, '.0f'):>9}")

    await backend.client(workspace).releaseArtifact(runId)
    print(f"\nartifact: {size} bytes ({size / MiB:.1f} MiB)")
    for side in SIDES:
        key = "seconds" if side in ("real", "plain") else "whole"
        times = [done[side][key] for done, _ in rounds]
        print(f"  {side:>5}: median {rate(size, median(times)):.0f} MB/s "
              f"({median(times):.2f} s), best {rate(size, min(times)):.0f} MB/s"
              + ("" if key == "whole" else
                 f"; whole process median {median([d[side]['whole'] for d, _ in rounds]):.2f} s"))
    for name, label in (("library", "library real/plain (inside the processes)"),
                        ("cli", "cli/plain (whole processes)")):
        ratios = [figures[name] for _, figures in rounds]
        print(f"median ratio {label}: {median(ratios):.3f} (rounds "
              f"{', '.join(f'{r:.3f}' for r in ratios)}; target >= {RATIO_TARGET}): "
              f"{verdict(median(ratios) >= RATIO_TARGET)}")
        print("  " + quietLine([(figures[name], figures["others"], figures["wall"])
                                for _, figures in rounds], name + " ratio"))
    for name, label in (("cliScp", "cli/scp"), ("realScp", "real/scp")):
        ratios = [figures[name] for _, figures in rounds]
        print(f"median ratio {label} (whole processes, beside): {median(ratios):.3f} (rounds "
              f"{', '.join(f'{r:.3f}' for r in ratios)})")
    peaks = (("real client", max(d["real"]["peakRss"] for d, _ in rounds), True),
             ("cli client (the whole command)", max(d["cli"]["peakRss"] for d, _ in rounds),
              True),
             ("server (real and cli runs)",
              max(max(d["real"]["serverPeak"], d["cli"]["serverPeak"]) for d, _ in rounds), True),
             ("plain receiver", max(d["plain"]["peakRss"] for d, _ in rounds), False),
             ("plain sender", max(d["plain"]["serverPeak"] for d, _ in rounds), False))
    for name, peak, judged in peaks:
        print(f"peak RSS {name}: {mb(peak)} (target < {mb(RSS_TARGET)}): "
              + (verdict(peak < RSS_TARGET) if judged else "for comparison"))
    print(meter.summary())
    print(machineLine())
    return 0


def pairOf(a: float, b: float, spec: str) -> str:
    """Two figures of a pair as "a+b"."""
    return f"{a:{spec}}+{b:{spec}}"


if __name__ == "__main__":
    options = parseArguments()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("transfer"))
