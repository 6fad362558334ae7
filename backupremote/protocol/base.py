"""The base of every client-to-server command."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, TypeVar

from twisted.protocols import amp

from backupremote.protocol.features import REMOTE_CONTROL

REQUEST_ID = b"requestId"

_Responder = TypeVar("_Responder", bound=Callable[..., Any])


def _withRequestId(
    fields: list[tuple[bytes, amp.Argument]],
) -> list[tuple[bytes, amp.Argument]]:
    if any(name == REQUEST_ID for name, _ in fields):
        return list(fields)
    return [*fields, (REQUEST_ID, amp.Unicode(optional=True))]


class Request(amp.Command):
    """
    A command a client sends to the server.

    Every request carries an optional C{requestId} both ways: the server
    echoes it (or one it made) in the answer and in every log line.

    @cvar preAuth: answered before a successful ``auth``; only ``auth`` and
        ``capabilities`` may set it.
    @cvar feature: the licence feature the command needs; on an authenticated
        session the licence is checked again at every call (it may have
        expired). C{None} skips the check (``auth`` checks for itself;
        ``ping`` is only keep-alive).
    """

    preAuth: ClassVar[bool] = False
    feature: ClassVar[str | None] = REMOTE_CONTROL

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.arguments = _withRequestId(cls.arguments)
        cls.response = _withRequestId(cls.response)

    @classmethod
    def responder(cls, methodfunc: _Responder) -> _Responder:
        """
        AMP's responder decorator, which also marks the function with the
        command it answers (C{answers}), so a dispatcher can find responders
        without AMP's private tables.
        """
        methodfunc.answers = cls  # type: ignore[attr-defined]
        return super().responder(methodfunc)


def answeredBy(function: Any) -> type[Request] | None:
    """The command C{function} was declared to answer with C{Command.responder}, if any."""
    command = getattr(function, "answers", None)
    return command if isinstance(command, type) and issubclass(command, Request) else None
