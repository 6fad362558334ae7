"""
Fields every log line of a piece of work carries, without passing them to
each logger: a run's C{runId}, C{scheduleId}, C{clientId}, C{requestId}
and, while delivering, its C{destination}.

The fields live in a C{contextvars} variable. Twisted runs each coroutine
(C{Deferred.fromCoroutine}) in a copy of the context it was started in, so
fields bound inside a job's coroutine reach every line logged from it and
from the coroutines it starts (the download, a delivery, each remote call),
and no other job's:

    bindLogContext(runId=job.runId, scheduleId=job.scheduleId)   # in the job's coroutine
    with logContext(destination=name):                            # a part of it
        ...

L{withLogContext} wraps a log observer (the JSON log file's) so that each
event gets the bound fields it does not carry itself. Remote calls made in
a run's context get request ids that start with the runId
(L{newRequestId}), so one C{grep RUNID} over both daemons' logs shows the
run end to end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from twisted.logger import ILogObserver
from zope.interface import provider

_FIELDS: ContextVar[Mapping[str, str]] = ContextVar("backupremote.logContext", default={})


def currentLogContext() -> Mapping[str, str]:
    """The fields bound in the current context."""
    return _FIELDS.get()


def bindLogContext(**fields: str | None) -> None:
    """Bind C{fields} (C{None}: unbind) for the rest of the current context."""
    merged = dict(_FIELDS.get())
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    _FIELDS.set(merged)


@contextmanager
def logContext(**fields: str | None) -> Iterator[None]:
    """Bind C{fields} inside the C{with} block only."""
    token = _FIELDS.set(_FIELDS.get())
    bindLogContext(**fields)
    try:
        yield
    finally:
        _FIELDS.reset(token)


def newRequestId() -> str:
    """
    A request id for a remote call: inside a run's context, the bound
    C{requestId} (or the C{runId}) and a random suffix, so the server's lines
    of the request (it logs the id on each) hold the runId; a UUID outside.
    """
    fields = _FIELDS.get()
    base = fields.get("requestId") or fields.get("runId")
    if base:
        return f"{base}.{uuid.uuid4().hex[:8]}"
    return str(uuid.uuid4())


def runRequestId(runId: str) -> str:
    """The C{requestId} to bind for one drive of a run: C{<runId>:<random>}."""
    return f"{runId}:{uuid.uuid4().hex[:8]}"


def withLogContext(observer: ILogObserver,
                   defaults: Mapping[str, str] | None = None) -> ILogObserver:
    """
    C{observer}, given each event with the bound fields (and C{defaults})
    that the event does not carry itself; the event is copied, never changed.
    """
    fixed = dict(defaults or {})

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        bound = _FIELDS.get()
        if not bound and not fixed:
            observer(event)
            return
        extra = {k: v for k, v in {**fixed, **bound}.items() if k not in event}
        observer({**extra, **event} if extra else event)

    return observe
