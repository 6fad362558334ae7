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
"""

from __future__ import annotations

from twisted.internet.interfaces import (
    IReactorFromThreads,
    IReactorProcess,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
)


class IChildReactor(IReactorProcess, IReactorTime):
    """Runs child processes and times them out: L{backupremote.childprocess.runProcess}."""


class IWorkReactor(IChildReactor, IReactorThreads):
    """Runs children, threads and timers: the backup pipeline and the runs it serves."""


class IListeningReactor(IReactorTCP, IReactorSSL):
    """Listens on an endpoint string, C{tcp:} or C{ssl:}."""


class IServerReactor(IWorkReactor, IListeningReactor):
    """All a server asks of its reactor: its work and its listening ports."""


class IMetricsReactor(IReactorTime, IReactorFromThreads, IListeningReactor):
    """Times what a daemon's metrics count, samples it on the reactor thread, serves scrapes."""
