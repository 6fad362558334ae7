"""
A short CPU time slice for the reactor thread.

The server's reactor answers many small requests while, on the same cores,
CPU-bound work runs: the backup's dump and compressor, the database
server, a download's client, anything else on the machine. Linux's
scheduler (EEVDF, 6.6 and later) lets a waking thread run at once only if
its virtual deadline comes first, and the deadline is as far as the
thread's slice: with the default slice (1.4 ms on this machine) the
reactor, busy half the time with 200 clients asking ten times a second, waited for a core 42% of the time during a backup and its answers'
p99 was 134-169 ms (issue 16 item 4; C{/proc/PID/task/TID/schedstat}).

Since Linux 6.12 a thread of the normal class can ask for a shorter slice
(C{sched_setattr} with C{sched_runtime}): it then runs sooner after it
wakes, for shorter turns, with the same share of the CPU (its nice value
decides that, and is left alone). L{requestSlice} asks for it; older
kernels ignore the request, other systems have no such call, and the
server runs as before.

A thread's slice is inherited by the threads and processes it starts, so
the pipeline's children get the kernel's default back (L{defaultSliceFor}).
"""

from __future__ import annotations

import ctypes
import platform
import struct
import sys

from twisted.application.service import Service
from twisted.logger import Logger

#: The reactor thread's slice by default (C{[server] reactor_time_slice_us}):
#: the shortest the kernel grants.
REACTOR_SLICE_NS = 100_000

#: C{sched_setattr} / C{sched_getattr} by machine (Linux's syscall tables).
_SYSCALLS = {
    "x86_64": (314, 315),
    "aarch64": (274, 275),
    "riscv64": (274, 275),
    "ppc64le": (355, 356),
    "s390x": (345, 346),
}

#: struct sched_attr (the 56-byte version with the utilisation clamps).
_ATTR = struct.Struct("IIQiIQQQII")

#: sched_policy values of the normal class (SCHED_OTHER, SCHED_BATCH).
_NORMAL_POLICIES = (0, 3)

_log = Logger(namespace="backupremote.server")


def _calls() -> tuple[ctypes.CDLL, int, int] | None:
    if not sys.platform.startswith("linux"):
        return None
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    return ctypes.CDLL(None, use_errno=True), *numbers


def _attributes(tid: int) -> list[int] | None:
    calls = _calls()
    if calls is None:
        return None
    libc, _, getattrCall = calls
    buffer = ctypes.create_string_buffer(_ATTR.size)
    if libc.syscall(getattrCall, tid, buffer, _ATTR.size, 0) != 0:
        return None
    return list(_ATTR.unpack(buffer.raw))


def _setSlice(nanoseconds: int, tid: int) -> bool:
    calls = _calls()
    fields = _attributes(tid)
    if calls is None or fields is None:
        return False
    libc, setattrCall, _ = calls
    if fields[1] not in _NORMAL_POLICIES:
        return False  # a real-time policy the operator chose: not ours to change
    fields[0] = _ATTR.size
    fields[2] = 0  # sched_flags: none (the policy and nice value stay as they are)
    fields[5] = nanoseconds  # sched_runtime: the slice; 0 is the kernel's default
    request = ctypes.create_string_buffer(_ATTR.pack(*fields), _ATTR.size)
    if libc.syscall(setattrCall, tid, request, 0) != 0:
        return False
    granted = _attributes(tid)
    return granted is not None and (nanoseconds == 0 or granted[5] == nanoseconds)


def requestSlice(nanoseconds: int = REACTOR_SLICE_NS, tid: int = 0) -> bool:
    """
    Ask for a C{nanoseconds} slice for thread C{tid} (0: the calling
    thread); whether the kernel granted it (C{False} where it cannot).
    """
    try:
        return _setSlice(nanoseconds, tid)
    except (OSError, AttributeError, ValueError):
        return False


def sliceOf(tid: int = 0) -> int | None:
    """The slice of thread C{tid} (0: the calling thread) in ns, if this system tells."""
    try:
        fields = _attributes(tid)
    except (OSError, AttributeError, ValueError):
        return None
    return None if fields is None else fields[5]


def defaultSliceFor(pid: int) -> None:
    """
    Give a process the calling thread just started the kernel's default
    slice (a pipeline child: CPU-bound, not waiting on clients), whatever
    it inherited.
    """
    requestSlice(0, pid)


def shortenReactorSlice(nanoseconds: int = REACTOR_SLICE_NS) -> bool:
    """
    Called on the reactor thread when the server starts: ask for a
    C{nanoseconds} slice and say in the log whether it was granted.
    """
    granted = requestSlice(nanoseconds)
    if granted:
        _log.info("the reactor thread runs with a {slice} us CPU time slice (answers "
                  "wait less for a core on a busy machine)", slice=nanoseconds // 1000)
    else:
        _log.info("this kernel keeps its default CPU time slice for the reactor thread "
                  "(Linux 6.12 or later shortens it)")
    return granted


class ReactorSlice(Service):
    """
    The server's reactor thread asks for a short slice when it starts
    (C{nanoseconds}; 0: it keeps the kernel's default and asks nothing).
    """

    granted = False

    def __init__(self, nanoseconds: int = REACTOR_SLICE_NS) -> None:
        self.nanoseconds = nanoseconds

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        if self.nanoseconds:
            self.granted = shortenReactorSlice(self.nanoseconds)

