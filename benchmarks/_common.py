"""
What both benchmarks share: a cleanup stack that runs even on Ctrl-C, a
real ``twistd backupremote-server`` in its own process, a client folder for
it, peak-RSS readings from /proc, and small statistics helpers.

Everything a benchmark makes lives in one temporary folder under the OS temp
folder (the same disk the server stages on), removed at exit. The server gets
``TMPDIR`` pointing inside that folder, so its staging is private to the run
and goes away with it. Servers and the databases of
``tests/databases/servers.py`` are started through ``setpriv --pdeathsig``:
they stop even if the benchmark is killed outright.
"""

from __future__ import annotations

import inspect
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# The benchmarks measure the working tree: this process imports backupremote
# (and the test helpers) from it, and so does the server process (PYTHONPATH).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.python.filepath import FilePath

from backupremote.client.api import BackupRemoteClient
from backupremote.client.clientinit import createClientFolder
from backupremote.client.config import loadClientConfig
from backupremote.license import generateIssuerKeyPair, issueLicense, loadIssuerKey
from backupremote.server.admin.serverinit import createServerFolder, registerClient
from backupremote.server.config import loadServerConfig
from tests.databases.servers import _Daemon, freePort

PYTHON = sys.executable
TWISTD = str(Path(sys.executable).with_name("twistd"))
CLIENT_ID = "bench-client"
MB = 1_000_000
MiB = 1 << 20


# --- running a benchmark ------------------------------------------------------


class Workspace:
    """
    The benchmark's temporary folder and its cleanup stack (last in, first
    out). It also stands in for the trial test case that the helpers of
    C{tests/databases/servers.py} expect (C{mktemp}, C{addCleanup}).
    """

    def __init__(self, prefix: str) -> None:
        self.root = Path(tempfile.mkdtemp(prefix=f"br-bench-{prefix}-"))
        self._cleanups: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._counter = 0
        self.addCleanup(shutil.rmtree, str(self.root), True)

    def mktemp(self) -> str:
        self._counter += 1
        return str(self.root / f"tmp-{self._counter}")

    def path(self, name: str) -> Path:
        return self.root / name

    def addCleanup(self, function: Callable[..., Any], *args: Any) -> None:
        self._cleanups.append((function, args))

    async def cleanUp(self) -> None:
        while self._cleanups:
            function, args = self._cleanups.pop()
            try:
                result = function(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - report it, and go on cleaning up
                print(f"cleanup {getattr(function, '__name__', function)} failed:",
                      file=sys.stderr)
                traceback.print_exc()


def runBenchmark(main: Callable[[Workspace], Awaitable[int]], workspace: Workspace) -> None:
    """
    Run C{main(workspace)} on the reactor and exit with its code (1 if it
    raised, 130 on Ctrl-C). The workspace is cleaned up before the reactor
    stops, however it stops.
    """
    outcome = {"code": 130}
    started = time.monotonic()

    def stop(_: Any = None) -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def finished(code: int | None) -> None:
        outcome["code"] = code or 0

    def failed(failure: Any) -> None:
        if reactor.running and not failure.check(CancelledError):
            outcome["code"] = 1
            print("\nthe benchmark failed:", file=sys.stderr)
            failure.printTraceback(file=sys.stderr)

    def start() -> None:
        work = Deferred.fromCoroutine(main(workspace))
        work.addCallbacks(finished, failed).addBoth(stop)

    def cleanUp() -> Deferred[None]:
        if outcome["code"] == 130:
            print("\ninterrupted: cleaning up", file=sys.stderr)
        return Deferred.fromCoroutine(workspace.cleanUp())

    reactor.addSystemEventTrigger("before", "shutdown", cleanUp)
    reactor.callWhenRunning(start)
    reactor.run()
    print(f"runtime: {time.monotonic() - started:.1f} s (exit code {outcome['code']})")
    sys.exit(outcome["code"])


def machineLine() -> str:
    """The machine and its load average (which counts the benchmark's own processes too)."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()},"
            f" Python {platform.python_version()}; load average {load}")


class OthersMeter:
    """
    How much CPU other processes took while a run was timed: the machine's
    busy time (/proc/stat) minus what the benchmark's own processes used.
    A few tenths of a second is background; whole seconds mean the timings
    of that run are disturbed.
    """

    def __init__(self) -> None:
        self.runs = 0
        self.othersTotal = 0.0
        self.wallTotal = 0.0

    @staticmethod
    def busy() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")

    def record(self, busy: float, ours: float, wall: float) -> float:
        """C{busy}: machine busy seconds during the run; C{ours}: our processes' CPU seconds."""
        others = max(0.0, busy - ours)
        self.runs += 1
        self.othersTotal += others
        self.wallTotal += wall
        return others

    @staticmethod
    def quiet(others: float, wall: float) -> bool:
        """Whether a run (or pair) of C{wall} seconds was hardly disturbed (< 10% of the cores)."""
        return others < 0.10 * wall * (os.cpu_count() or 1)

    def summary(self) -> str:
        cores = os.cpu_count() or 1
        share = self.othersTotal / (self.wallTotal * cores) if self.wallTotal else 0.0
        line = (f"other processes used {self.othersTotal:.1f} CPU s during the timed runs "
                f"({share:.0%} of the {cores} cores; the kernel's work for the runs, such as "
                "writeback, counts here too: a few % is normal)")
        if share > 0.15:
            line += ("\n  warning: the machine was not quiet; the timings are disturbed (the pairs "
                     "alternate to share the noise, but prefer a quiet machine)")
        return line


async def observed(meter: OthersMeter, pids: list[int], run: Awaitable[dict]) -> dict:
    """Await C{run} (a dict of figures) and add C{others}: other processes' CPU meanwhile."""
    busy, ours = meter.busy(), ourCpu(pids)
    started = time.monotonic()
    result = await run
    result["others"] = meter.record(meter.busy() - busy, ourCpu(pids) - ours,
                                    time.monotonic() - started)
    return result


def ourCpu(pids: list[int]) -> float:
    """CPU seconds of the benchmark (with the children it reaped) and of the trees of C{pids}."""
    return selfCpu() + sum(treeCpu(pid) for pid in pids)


def selfCpu() -> float:
    """CPU seconds of this process and of the children it has waited for."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# --- peak memory --------------------------------------------------------------


def _status(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def peakRss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes; children excluded."""
    return _status(pid, "VmHWM")


def currentRss(pid: int) -> int:
    return _status(pid, "VmRSS")


def cpuSeconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) of the process itself and of its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return ((int(fields[11]) + int(fields[12])) / tick,
            (int(fields[13]) + int(fields[14])) / tick)


def treeCpu(pid: int) -> float:
    """CPU seconds of a process, of the children it reaped and of its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += sum(cpuSeconds(current))
        except OSError:
            continue
        todo += parents.get(current, [])
    return total


def resetPeakRss(pid: int) -> None:
    """Start a new peak: VmHWM becomes the current RSS (Linux >= 4.0, our own processes)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


# --- a real server in its own process ------------------------------------------


class ServerProcess:
    """``twistd -n backupremote-server`` on 127.0.0.1, and a client folder for it."""

    def __init__(self, daemon: Any, port: int, clientConfig: Path, serverDir: Path,
                 tmpDir: Path) -> None:
        self.daemon = daemon
        self.port = port
        self.clientConfig = clientConfig
        self.serverDir = serverDir
        self.tmpDir = tmpDir

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def client(self, workspace: Workspace) -> BackupRemoteClient:
        client = BackupRemoteClient.fromConfig(
            reactor, loadClientConfig(FilePath(str(self.clientConfig))))
        client.connection.service.startService()  # the benchmark owns the connection
        workspace.addCleanup(client.close)
        return client

    def stagingFolder(self, runId: str) -> Path | None:
        """The folder where this server stages a run, if it exists (its TMPDIR is ours)."""
        return next(self.tmpDir.glob(f"backupremote-{os.getuid()}/*/{runId}"), None)


async def startServer(workspace: Workspace, extraToml: str = "",
                      name: str = "backupremote") -> ServerProcess:
    """
    Make a server folder (certificate, data, a trusted issuer), register a
    client with a licence, write the client folder, and start the server
    with the venv's twistd on a free port. C{extraToml} is appended to
    server.toml (new tables only). C{name}: the folder of it all in the
    workspace (one per server, when a benchmark starts several).
    """
    base = workspace.path(name)
    keyPath, pubPath = generateIssuerKeyPair(FilePath(str(base / "issuer")))
    port = freePort()
    folder = createServerFolder(FilePath(str(base / "server")),
                                listen=f"ssl:{port}:interface=127.0.0.1",
                                trustIssuers=[pubPath])
    if extraToml:
        folder.configPath.setContent(folder.configPath.getContent() + b"\n"
                                     + extraToml.encode("utf-8"))
    serverConfig = loadServerConfig(folder.configPath)
    secret = registerClient(serverConfig, CLIENT_ID)
    _, token = issueLicense(loadIssuerKey(keyPath), CLIENT_ID, days=1)
    clientConfig = createClientFolder(
        FilePath(str(base / "client")), f"127.0.0.1:{port}", CLIENT_ID,
        secret.encode("ascii"), token, fingerprints=[folder.fingerprint])
    # The benchmark's connection idles for minutes between uses: no client
    # keep-alive pings (the server's own keep-alive still runs).
    clientConfig.setContent(clientConfig.getContent()
                            + b"\n[limits]\nkeepalive_interval = 3600\n")
    tmpDir = base / "tmp"
    tmpDir.mkdir(mode=0o700)
    env = dict(os.environ, TMPDIR=str(tmpDir), PYTHONPATH=str(REPO))
    serverDir = base / "server"
    daemon = _Daemon.spawn(
        "backupremote-server",
        [TWISTD, "-n", "--pidfile=", f"--logfile={serverDir / 'twistd.log'}",
         "backupremote-server", "--config", folder.configPath.path],
        env, str(serverDir), str(serverDir / "twistd.out"))
    workspace.addCleanup(daemon.stop)
    await daemon.waitUntilReady(port, extraLog=str(serverDir / "twistd.log"))
    return ServerProcess(daemon, port, Path(clientConfig.path), serverDir, tmpDir)


# --- figures --------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def quietLine(pairs: list[tuple[float, float, float]], name: str) -> str:
    """
    The median C{name} over the quiet pairs only, from (ratio, others, wall)
    per pair: a cross-check when the machine was busy, not the target.
    """
    quiet = [ratio for ratio, others, wall in pairs if OthersMeter.quiet(others, wall)]
    if not quiet:
        return f"no pair was quiet (other processes under 10% of the cores): no quiet {name}"
    return (f"median {name} over the {len(quiet)} quiet pair(s) of {len(pairs)} (other processes "
            f"under 10% of the cores): {median(quiet):.3f}")


def mb(count: float) -> str:
    return f"{count / MB:.1f} MB"
