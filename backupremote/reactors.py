"""
The reactor, typed by what each part uses of it.

A parameter that takes the reactor names the C{IReactor*} interfaces it
uses: one where one is enough (C{IReactorTime} for timers,
C{IReactorFromThreads} to hand work back to the reactor thread), else one
of the combinations below. A type hint cannot intersect zope interfaces, so
each combination is an interface that extends the ones it joins; the
reactor provides them all, and mypy (with mypy-zope) checks each use
against them, while tests pass a C{Clock} or a C{MemoryReactor} where one
interface is asked for.

The bases are listed in one order, the network before time and time
before threads (C{IReactorTCP}, C{IReactorTime}, C{IReactorThreads}), so
that every combination, C{ICommandReactor} the widest, has a consistent
resolution order (mypy refuses one that has none).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IReactorCore,
    IReactorFromThreads,
    IReactorPluggableNameResolver,
    IReactorProcess,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)
from twisted.internet.threads import deferToThreadPool


class IChildReactor(IReactorProcess, IReactorTime):
    """Runs child processes and times them out: L{backupremote.childprocess.runProcess}."""


class IWorkReactor(IChildReactor, IReactorThreads):
    """Runs children, threads and timers: the backup pipeline and the runs it serves."""


class IListeningReactor(IReactorTCP, IReactorSSL):
    """Listens on an endpoint string, C{tcp:} or C{ssl:}."""


class IServerReactor(IListeningReactor, IWorkReactor):
    """All a server asks of its reactor: its work and its listening ports."""


class IMetricsReactor(IListeningReactor, IReactorTime, IReactorFromThreads):
    """Times what a daemon's metrics count, samples it on the reactor thread, serves scrapes."""


class IConnectingReactor(IReactorTCP, IReactorTime, IReactorPluggableNameResolver):
    """
    Connects out to a host by name (C{HostnameEndpoint} resolves it with
    the reactor's name resolver), with timeouts: the SSH, FTP, HTTP
    (C{Agent}, treq) and SMTP sessions.
    """


class IStoreReactor(IReactorTime, IReactorFromThreads):
    """Works the client's store: its thread hands answers back, rows stamped with its time."""


class ITransferReactor(IStoreReactor, IConnectingReactor, IReactorThreads):
    """Connects out and moves files with threads: a server's connection and its downloads, S3."""


class IDestinationReactor(ITransferReactor, IWorkReactor):
    """Reaches every kind of destination: threads (disk, FTPS), children (rclone), the network."""


class IWebReactor(IListeningReactor, IReactorTime):
    """Serves on an endpoint string and keeps time: the client's dashboard."""


class IClientReactor(IMetricsReactor, IDestinationReactor, IWebReactor, IReactorCore):
    """All the client daemon asks of its reactor (its store closes at the reactor's shutdown)."""


class ICommandReactor(IClientReactor, IServerReactor):
    """
    What C{backupremote}'s commands are given (the reactor C{react} runs):
    the client's parts, and C{demo} also a server's.
    """


def inThreadPool(reactor: IReactorTime) -> Callable[..., Deferred[Any]]:
    """
    Blocking work in C{reactor}'s thread pool, for a part typed by its
    timers (so its tests can run it on a C{Clock} with their own
    C{runInThread}): the threads are asked for when work comes (a real
    reactor has them; a C{Clock} does not, and says so with C{TypeError}).
    """

    def run(function: Callable[..., Any], *args: Any) -> Deferred[Any]:
        threads = IReactorThreads(reactor)
        return deferToThreadPool(threads, threads.getThreadPool(), function, *args)

    return run
