"""
Blocking work in a thread of its own, answered in the reactor.

The pipeline's byte movers (the artifact sink, the verification reader,
the SQLite backup) each run for the whole of a stage and block on pipes and
disks, so they get dedicated threads rather than slots of the reactor's
shared pool (which a few concurrent runs could exhaust, each waiting for a
slot another run holds). A L{StopFlag} asks them to end early; they look at
it between chunks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.interfaces import IReactorThreads
from twisted.python.failure import Failure

from backupremote.outcome import Outcome

T = TypeVar("T")


class StopFlag:
    """A flag the reactor sets and worker threads read between chunks."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()


def runInThread(reactor: IReactorThreads, name: str, function: Callable[..., T], *args: Any
                ) -> Outcome[T]:
    """
    Run C{function(*args)} in a new daemon thread called C{name}; the
    L{Outcome} is settled in the reactor thread with its result or its
    exception, once the thread has ended. A thread cannot be stopped from outside: stop the work
    through its L{StopFlag}, then wait for the outcome.
    """
    outcome: Outcome[T] = Outcome()

    def work() -> None:
        try:
            result: Any = function(*args)
        except BaseException:  # noqa: BLE001 (reported, never lost)
            result = Failure()
        reactor.callFromThread(_settle, thread, outcome, result)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    return outcome


def _settle(thread: threading.Thread, outcome: Outcome[Any], result: Any) -> None:
    # The thread has nothing left to do but exit: once the outcome is
    # known, the thread is gone too.
    thread.join()
    if isinstance(result, Failure):
        outcome.fail(result)
    else:
        outcome.succeed(result)
