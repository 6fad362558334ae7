"""
Benchmark: the server's own Python work per control request, in-process.

The real server wiring (tests.fixtures.ServerHarness: the components,
the gate, the responders, an authenticated session) answers the mix
benchmarks/load.py sends (listDatabaseConfigs, getExecutionStatus of a
finished run, ping) as raw AMP boxes fed straight to the connection's
dataReceived; the answers go nowhere. No TLS, no sockets, no reactor: what
is left is what a request costs the reactor in Python (parsing, the gate,
the store reads, the answer's encoding), the part a change to the server's
code can cut. Run it beside an older tree to compare:

    PYTHONPATH=. .venv/bin/python benchmarks/request_cost.py --requests 20000
    .venv/bin/python benchmarks/request_cost.py --profile   # cProfile, top 30
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import shutil
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.protocols import amp  # noqa: E402

from backupremote.protocol.databases import CreateDatabaseConfig, DatabaseConfigInput  # noqa: E402
from backupremote.protocol.options import BackupOptions  # noqa: E402
from backupremote.protocol.runs import RunStatus  # noqa: E402
from backupremote.server.runs.store import RunStore  # noqa: E402
from tests.fixtures import ServerHarness  # noqa: E402


class _Case:
    """What ServerHarness needs of a test case: temp paths and a cleanup list."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="br-bench-requestcost-")
        self.counter = itertools.count()
        self.cleanups: list[Any] = []

    def mktemp(self) -> str:
        return f"{self.root}/t{next(self.counter)}"

    def addCleanup(self, function: Any, *arguments: Any) -> None:
        self.cleanups.append((function, arguments))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--profile", action="store_true", help="cProfile the requests")
    arguments = parser.parse_args()

    case = _Case()
    try:
        return _measure(case, arguments)
    finally:
        for function, args in reversed(case.cleanups):
            function(*args)
        shutil.rmtree(case.root, ignore_errors=True)


def _measure(case: _Case, arguments: argparse.Namespace) -> int:
    harness = ServerHarness(case)
    loopback = harness.connect()
    loopback.auth(harness)
    config = loopback.call(CreateDatabaseConfig, config=DatabaseConfigInput(
        name="pgbench", engine="postgresql", host="127.0.0.1", port=5432, database="appdb",
        user="postgres", password="secret", backup=BackupOptions(format="plain")))["config"]
    runId = str(uuid.uuid4())
    RunStore(harness.store.connection).insert(RunStatus(
        runId=runId, databaseConfigId=config.id, clientId="alice", options=BackupOptions(),
        state="completed", stage="finalizing", createdAt=datetime.now(timezone.utc)))
    boxes = [
        amp.AmpBox({b"_command": b"listDatabaseConfigs", b"_ask": b"1", b"offset": b"0",
                    b"limit": b"100"}).serialize(),
        amp.AmpBox({b"_command": b"getExecutionStatus", b"_ask": b"2",
                    b"runId": runId.encode()}).serialize(),
        amp.AmpBox({b"_command": b"ping", b"_ask": b"3"}).serialize(),
    ]
    server = loopback.server
    answers: list[bytes] = []
    server.transport.write = answers.append  # type: ignore[method-assign]
    for data in boxes:  # warm up, and check each is answered, not refused
        server.dataReceived(data)
    refused = [answer for answer in answers if b"_error_code" in answer]
    if len(answers) != len(boxes) or refused:
        print(f"unexpected answers: {answers!r}")
        return 1
    count = arguments.requests

    def run() -> None:
        for index in range(count):
            server.dataReceived(boxes[index % 3])
        answers.clear()

    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    print(f"{count} requests (listDatabaseConfigs, getExecutionStatus, ping in turn): "
          f"{seconds / count * 1e6:.1f} us each")
    if arguments.profile:
        profile = cProfile.Profile()
        profile.runcall(run)
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
