"""Blocking destination work in the reactor's thread pool, stoppable between blocks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool

T = TypeVar("T")


def inPool(reactor: IReactorThreads, function: Callable[..., T], *args: Any) -> Deferred[T]:
    """
    Run C{function(stop, *args)} in C{reactor}'s thread pool. Cancelling the
    result sets the C{threading.Event} C{stop}, which C{function} checks
    between blocks (and then cleans up after itself).
    """
    stop = threading.Event()
    result: Deferred[T] = Deferred(lambda _: stop.set())

    def settle(value: Any, ok: bool) -> None:
        if not result.called:  # else cancelled: the thread cleaned up after itself
            (result.callback if ok else result.errback)(value)

    work = deferToThreadPool(reactor, reactor.getThreadPool(), function, stop, *args)
    work.addCallbacks(settle, settle, callbackArgs=(True,), errbackArgs=(False,))
    return result
