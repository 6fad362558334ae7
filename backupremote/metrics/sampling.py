"""
Reading the reactor's state from a scrape: C{MetricsResource} renders in
the reactor's thread pool, so collectors that read what the reactor thread
owns (run tables, transfer maps) hop onto it, with a timeout.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.python import threadable

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorFromThreads

T = TypeVar("T")

#: Seconds a scrape waits for the reactor before it fails (a 500).
SAMPLE_TIMEOUT = 10.0


def onReactor(reactor: IReactorFromThreads, function: Callable[[], T], timeout: float = SAMPLE_TIMEOUT) -> T:
    """
    C{function()} run in the reactor thread: called at once from it (or
    when no reactor thread is known), else handed to it and waited for.
    """
    if threadable.ioThread is None or threadable.isInIOThread():
        return function()
    answer: queue.Queue[tuple[bool, Any]] = queue.Queue(1)

    def run() -> None:
        try:
            answer.put((True, function()))
        except BaseException as error:
            answer.put((False, error))

    reactor.callFromThread(run)
    ok, value = answer.get(timeout=timeout)
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]
