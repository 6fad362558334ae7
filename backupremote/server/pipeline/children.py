"""
The pipeline's child processes: spawned as process-group leaders, watched,
and killed together (each a L{backupremote.childprocess.Child}).

Each child's stdin, stdout and stderr are wired by the caller through
C{childFDs} (OS pipes between children, files, or C{"r"}/C{"w"} pipes to
the reactor). The reactor only ever reads stderr (kept up to a cap, for
messages) and, when asked, a small stdout; the data itself flows through OS
pipes between processes and worker threads, never through the reactor.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorProcess

from backupremote.childprocess import Child, groupLeaderArgv
from backupremote.server.machinery.timeslice import defaultSliceFor

#: How much nicer than the server the dump and the compressor run. They can
#: take every core (zstd -T0 beside pg_dump) while the server's reactor,
#: in the same scheduler group, answers its clients: at the same priority
#: the reactor waited for a core and, with 200 clients asking 10 times a
#: second, answers took a median of 92-117 ms during a backup (0.9 ms without
#: one; benchmarks/load.py). Nicer, they still have every core the reactor
#: leaves, so a backup on an otherwise idle machine is as fast.
#: Without scheduler autogroups (all of the machine one group) they are also
#: nicer than the database's backend, which feeds a plain dump and is its
#: slowest part: a 4 GB pgbench dump was as fast at +5 as at 0 on an idle
#: machine (9.65 / 9.62 s), 8% faster beside a busy nice-0 process (12.40 /
#: 13.56 s), and pg_dump with zstd used 10-35% less CPU (fewer, larger
#: batches); docs/benchmarks.md, issue 16 item 1, 17:10-17:22 UTC.
PIPELINE_NICENESS = 5


class Children:
    """Every child of one run: spawned here, killed here, waited for here."""

    def __init__(self, reactor: IReactorProcess, spawned: Any = None) -> None:
        self._reactor = reactor
        self._spawned = spawned
        self.all: list[Child] = []

    def spawn(self, role: str, argv: Sequence[str], env: Mapping[str, str],
              childFDs: Mapping[int, int | str]) -> Child:
        """
        Start C{argv} (absolute program path, no shell) in the environment
        C{env} only, as the leader of a new process group, with C{childFDs}
        as in C{spawnProcess}. A C{"w"} stdin is closed at once.
        """
        if not os.path.isabs(argv[0]):
            raise ValueError("pipeline children need an absolute program path")
        child = Child(role, closeStdin=childFDs.get(0) == "w")
        command = groupLeaderArgv(argv, PIPELINE_NICENESS)
        self._reactor.spawnProcess(child, command[0], command, env=dict(env),
                                   childFDs=dict(childFDs))
        if child.pid is not None:
            # not the reactor's short CPU time slice: it would wake-preempt the reactor
            defaultSliceFor(child.pid)
        self.all.append(child)
        if self._spawned is not None and child.pid is not None:
            self._spawned(role, child.pid)
        return child

    def killAll(self) -> None:
        for child in self.all:
            child.kill()

    @property
    def running(self) -> list[Child]:
        """The children that have not ended yet."""
        return [child for child in self.all if not child.finished]
