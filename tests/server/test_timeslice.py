"""
The reactor thread's short CPU time slice (Linux 6.12 and later) and the
default slice its pipeline children get back. Each test changes only a
thread of its own, or a child it started, never the test process's threads.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any, Callable

from twisted.trial.unittest import SynchronousTestCase

from backupremote.server.machinery.timeslice import (
    REACTOR_SLICE_NS,
    ReactorSlice,
    defaultSliceFor,
    requestSlice,
    sliceOf,
)


def onThread(function: Callable[[], Any]) -> Any:
    """C{function()} on a new thread (its slice dies with it)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(function()))
    thread.start()
    thread.join()
    return result[0]


class TimeSliceTests(SynchronousTestCase):
    def child(self) -> subprocess.Popen[bytes]:
        """A child that waits for its stdin to close."""
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                 stdin=subprocess.PIPE)

        def stop() -> None:
            assert child.stdin is not None
            child.stdin.close()
            child.wait()

        self.addCleanup(stop)
        return child

    def test_grantedOrUnchanged(self) -> None:
        """
        Where the kernel grants it, the calling thread runs with the slice
        asked for, and 0 gives the default back; elsewhere nothing changes.
        """
        def ask() -> tuple[int | None, bool, int | None, bool, int | None]:
            before = sliceOf()
            granted = requestSlice(REACTOR_SLICE_NS)
            during = sliceOf()
            restored = requestSlice(0)
            return before, granted, during, restored, sliceOf()

        before, granted, during, restored, after = onThread(ask)
        if granted:
            self.assertEqual(during, REACTOR_SLICE_NS)
            self.assertTrue(restored)
            self.assertEqual(after, before)
        else:
            self.assertEqual(during, before)

    def test_reactorSliceService(self) -> None:
        def start() -> tuple[bool, int | None]:
            service = ReactorSlice()
            service.startService()
            return service.granted, sliceOf()

        granted, during = onThread(start)
        self.assertEqual(granted, during == REACTOR_SLICE_NS)

    def test_childGetsTheDefaultBack(self) -> None:
        """A child started by a thread with the short slice runs with the default one."""
        def spawn() -> tuple[bool, int | None, int | None]:
            granted = requestSlice(REACTOR_SLICE_NS)
            child = self.child()
            inherited = sliceOf(child.pid)
            defaultSliceFor(child.pid)
            return granted, inherited, sliceOf(child.pid)

        granted, inherited, after = onThread(spawn)
        if granted:
            self.assertEqual(inherited, REACTOR_SLICE_NS)
            self.assertNotEqual(after, REACTOR_SLICE_NS)
            self.assertEqual(after, sliceOf())
        else:
            self.assertEqual(after, inherited)

    def test_childGetsTheDefaultWhoeverAsks(self) -> None:
        """The child's slice goes back to the default whatever it had."""
        child = self.child()
        requestSlice(REACTOR_SLICE_NS, child.pid)
        defaultSliceFor(child.pid)
        self.assertEqual(sliceOf(child.pid), sliceOf())

    def test_zeroAsksNothing(self) -> None:
        """C{[server] reactor_time_slice_us = 0}: the thread keeps its slice."""
        def start() -> tuple[bool, int | None, int | None]:
            before = sliceOf()
            service = ReactorSlice(0)
            service.startService()
            return service.granted, before, sliceOf()

        granted, before, after = onThread(start)
        self.assertFalse(granted)
        self.assertEqual(after, before)
