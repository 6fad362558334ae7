"""Blocking destination work in the reactor's thread pool, stoppable between blocks."""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine
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


def inPoolStoppable(reactor: IReactorThreads, stop: threading.Event, function: Callable[..., T],
                    *args: Any) -> Deferred[T]:
    """
    Run C{function(stop, *args)} in C{reactor}'s thread pool; the result is
    not cancellable: it fires with the thread's own outcome, once the
    thread is done (stop it through C{stop}).
    """
    return deferToThreadPool(reactor, reactor.getThreadPool(), function, stop, *args)


def stoppable(work: Callable[[threading.Event], Coroutine[Any, Any, T]]) -> Deferred[T]:
    """
    Run the coroutine C{work(stop)}, typically several L{inPoolStoppable}
    jobs sharing C{stop}. Cancelling the result sets C{stop} and fires it
    at once; C{work} then still runs to its end, cleaning up after itself.
    """
    stop = threading.Event()
    result: Deferred[T] = Deferred(lambda _: stop.set())

    def settle(value: Any, ok: bool) -> None:
        if not result.called:  # else cancelled: the work cleans up after itself
            (result.callback if ok else result.errback)(value)

    done = Deferred.fromCoroutine(work(stop))
    done.addCallbacks(settle, settle, callbackArgs=(True,), errbackArgs=(False,))
    return result
