"""
Benchmark: how fast the ``backupremote`` command answers, whole process.

Starts a real ``twistd backupremote-server`` (with one database
configuration), then times, in rounds whose order rotates so every command
sees the same machine:

  python    the bare interpreter (``python -c pass``): the floor under load;
  version   ``backupremote --version``            (target < 0.15 s);
  help      ``backupremote --help``               (target < 0.15 s);
  db list   ``backupremote --config C db list``   (target < 0.35 s: start-up,
            TLS, auth, the answer, exit).

Each is the console script pip writes (``from backupremote.cli.main import
run``) run against a copy of this working tree's package compiled to
bytecode, as pip installs it (the working tree itself may have no .pyc files:
with PYTHONDONTWRITEBYTECODE every run would compile ~70 modules again),
timed from the spawn to the reap (wall, and the child's own CPU from ``wait4``). Printed:
per command the min/median/max wall and the median CPU, the median of the
per-round ratio to the bare interpreter, and, from one more run under
``python -X importtime``, how many modules it imported and their cumulative
import time, with the five slowest top-level imports. The load average is
printed before and after: targets judged on a loaded machine say so.

    .venv/bin/python benchmarks/cli_startup.py            # 15 rounds
    .venv/bin/python benchmarks/cli_startup.py --runs 30
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import subprocess
import sys
import time

from _common import REPO, Workspace, machineLine, median, runBenchmark, startServer, verdict

from backupremote.protocol.databases import DatabaseConfigInput

PYTHON = sys.executable
TARGETS = {"version": 0.15, "help": 0.15, "db list": 0.35}

# what pip writes as the console script (setup.cfg: backupremote = backupremote.cli.main:run)
CONSOLE_SCRIPT = """\
import sys
from backupremote.cli.main import run
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(run())
"""


def parseArguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time backupremote --version, --help and db list, whole process, "
                    "in rotating rounds with the bare interpreter as the floor.",
        epilog="Targets: --help and --version < 0.15 s; db list < 0.35 s.")
    parser.add_argument("--runs", type=int, default=15, help="rounds, at least 5 (default 15)")
    arguments = parser.parse_args()
    if arguments.runs < 5:
        parser.error("--runs must be at least 5")
    return arguments


def installedCopy(workspace: Workspace) -> str:
    """This tree's package copied and compiled to bytecode, as pip installs it: its folder."""
    site = workspace.path("site")
    shutil.copytree(REPO / "backupremote", site / "backupremote",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if not compileall.compile_dir(str(site), quiet=1):
        raise RuntimeError("the copy of backupremote did not compile")
    return str(site)


def environment(site: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("COVERAGE_")}
    env["PYTHONPATH"] = site
    env.pop("BACKUPREMOTE_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the copy has its bytecode already
    return env


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds from spawn to reap, and the child's CPU seconds; raises if it failed."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env, cwd=str(REPO))
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{argv[2:]} exited {child.returncode}: {errors.decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def importProfile(argv: list[str], env: dict[str, str]) -> str:
    """Modules imported and their cumulative time, from one run under -X importtime."""
    done = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, cwd=str(REPO), text=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    top = sorted((row for row in rows if row[1] == 1), reverse=True)
    total = sum(cumulative for cumulative, depth, _ in rows if depth == 1)
    slowest = ", ".join(f"{name} {cumulative / 1000:.0f}" for cumulative, _, name in top[:5])
    return f"{len(rows)} modules, {total / 1000:.0f} ms of imports; slowest (ms): {slowest}"


async def main(workspace: Workspace, arguments: argparse.Namespace) -> int:
    print(machineLine())
    backend = await startServer(workspace)
    client = backend.client(workspace)
    # a configuration to list (it is never connected to)
    await client.createDatabaseConfig(DatabaseConfigInput(
        name="shop", engine="postgresql", host="127.0.0.1", port=5432, database="shop",
        user="backup"))
    await client.close()

    script = workspace.path("backupremote-console-script")
    script.write_text(CONSOLE_SCRIPT)
    config = str(backend.clientConfig)
    commands = {
        "python": [PYTHON, "-c", "pass"],
        "version": [PYTHON, str(script), "--version"],
        "help": [PYTHON, str(script), "--help"],
        "db list": [PYTHON, str(script), "--config", config, "db", "list"],
    }
    env = environment(installedCopy(workspace))
    for argv in commands.values():  # warm-up, untimed (the page cache, .pyc files)
        timed(argv, env)
    names = list(commands)
    walls: dict[str, list[float]] = {name: [] for name in names}
    cpus: dict[str, list[float]] = {name: [] for name in names}
    loadBefore = os.getloadavg()
    for round in range(arguments.runs):
        order = names[round % len(names):] + names[:round % len(names)]
        for name in order:
            wall, cpu = timed(commands[name], env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    loadAfter = os.getloadavg()

    print(f"\n{arguments.runs} rounds; load average before "
          f"{', '.join(f'{x:.2f}' for x in loadBefore)}, after "
          f"{', '.join(f'{x:.2f}' for x in loadAfter)}")
    print(f"{'command':>8} {'min s':>7} {'median s':>9} {'max s':>7} {'CPU s':>7}"
          f" {'x python':>9}   target")
    for name in names:
        ratios = [a / b for a, b in zip(walls[name], walls["python"], strict=True)]
        target = TARGETS.get(name)
        judged = (f"< {target:.2f} s: {verdict(median(walls[name]) < target)}"
                  if target else "(the floor)")
        print(f"{name:>8} {min(walls[name]):>7.3f} {median(walls[name]):>9.3f}"
              f" {max(walls[name]):>7.3f} {median(cpus[name]):>7.3f}"
              f" {median(ratios):>9.2f}   {judged}")
    print("\nimports (one run each under python -X importtime):")
    for name in names[1:]:
        print(f"  {name}: {importProfile(commands[name], env)}")
    print(machineLine())
    return 0


if __name__ == "__main__":
    options = parseArguments()
    runBenchmark(lambda workspace: main(workspace, options), Workspace("cli"))
