"""
One server connection: AMP with the pre-auth gate at dispatch.

Every box goes through L{ServerProtocol.dispatchCommand}, which decides
before any responder runs: only commands marked C{preAuth} pass before a
successful ``auth``; every other command, known or not, answers
C{AUTH_REQUIRED}. A command added later is therefore gated without doing
anything. Every answer and error carries the request id, every error is a
registry code, and an unexpected exception answers C{INTERNAL_ERROR}
without dropping the connection.

Memory and log space are bounded before the gate as well: the parser
refuses a box past L{BoxLimit} (small before ``auth``, the widest command
after it), the server's components' L{PreAuthAdmission} caps connections that have not
authenticated, and what such connections do wrong goes to the summarised
L{PreAuthRefusals} instead of a log line each.
"""

from __future__ import annotations

import re
from inspect import isawaitable
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.protocols import amp
from twisted.python.failure import Failure

from backupremote.keepalive import Heartbeat
from backupremote.protocol.base import REQUEST_ID, Request, answeredBy
from backupremote.protocol.boxlimits import PRE_AUTH, BoundedBoxes, BoxLimit
from backupremote.protocol.errors import (
    AUTH_FAILED,
    AUTH_RATE_LIMITED,
    AUTH_REQUIRED,
    BAD_REQUEST,
    INTERNAL_ERROR,
    UNKNOWN_COMMAND,
    VALIDATION_FAILED,
    BackupRemoteError,
)
from backupremote.protocol.session import Ping
from backupremote.protocol.structured import InvalidValue
from backupremote.server.edge.requestlog import RequestLog
from backupremote.server.edge.revocation import REVOKED
from backupremote.server.edge.session import RequestContext, Session

from backupremote.server.responders.groups import RESPONDER_GROUPS, ResponderGroup
from backupremote.tcptuning import noDelay

if TYPE_CHECKING:
    from backupremote.server.edge.components import ServerComponents

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_COMMAND_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

#: Refusals that count as misbehaviour on a connection that has not authenticated.
_VIOLATIONS = frozenset({AUTH_REQUIRED, UNKNOWN_COMMAND, BAD_REQUEST})

#: Refusals of an unauthenticated connection that go to the summary, not a line each.
_SUMMARISED = _VIOLATIONS | {AUTH_RATE_LIMITED}

#: Boxes a connection may send before ``auth``: a client needs two or three.
MAX_PRE_AUTH_BOXES = 32


def responderTable(groups: list[amp.CommandLocator]) -> dict[bytes, tuple[type[Request], Any]]:
    """
    Command name -> (command class, bound responder) over all groups: every
    method a group declared with C{SomeRequest.responder}.
    """
    table: dict[bytes, tuple[type[Request], Any]] = {}
    for group in groups:
        for attribute in dir(type(group)):
            function = getattr(type(group), attribute, None)
            command = answeredBy(function)
            if command is None:
                continue
            name = command.commandName
            if name in table:
                raise ValueError(f"two responders for {name!r}")
            table[name] = (command, getattr(group, attribute))
    return table


class ServerProtocol(BoundedBoxes, amp.AMP):
    """AMP for one client connection, gated, bounded, with keep-alive."""

    def __init__(self, core: ServerComponents, peer: str, peerHost: str,
                 responderGroups: Sequence[ResponderGroup] = RESPONDER_GROUPS) -> None:
        super().__init__()
        self.core = core
        self.session = Session(peer=peer, peerHost=peerHost)
        self.responders = responderTable([group(core, self) for group in responderGroups])
        self._heartbeat: Heartbeat | None = None
        self._authDeadline: Any = None
        self._preAuthBoxes = 0
        #: Why the server closed this connection before ``auth``, for the summary.
        self._closedBecause: str | None = None

    @property
    def peerHost(self) -> str:
        return self.session.peerHost

    def boxLimit(self) -> BoxLimit:
        return self.core.boxLimit if self.session.authenticated else PRE_AUTH

    def boxLimitExceeded(self, limit: BoxLimit, keys: int, size: int) -> None:
        why = f"a box past {limit.maxKeys} keys or {limit.maxBytes} bytes"
        if self.session.authenticated:
            self._log(self._newRequestId()).warn("{why}; closing the connection", why=why)
        self._closeBeforeAuth(why)

    def evict(self, why: str) -> None:
        """Dropped by the admission caps to make room for a newer connection."""
        self._closeBeforeAuth(f"dropped: {why}")

    def _closeBeforeAuth(self, why: str) -> None:
        self._closedBecause = why
        self.transport.abortConnection()

    # Connection lifetime

    def makeConnection(self, transport: Any) -> None:
        # AMP's own makeConnection logs a line per connection: anyone could fill the log.
        amp.BinaryBoxProtocol.makeConnection(self, transport)

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        config = self.core.config
        self.core.connections.add(self)
        self.core.admission.admit(self)
        self._heartbeat = Heartbeat(
            self.core.clock,
            ping=lambda: self.callRemote(Ping),
            abort=self.transport.abortConnection,
            interval=config.keepaliveInterval,
            timeout=config.keepaliveTimeout,
        )
        self._heartbeat.start()
        self._authDeadline = self.core.clock.callLater(
            config.authTimeout, self._authTimedOut
        )

    def dataReceived(self, data: bytes) -> None:
        if self._heartbeat is not None:
            self._heartbeat.heard()
        super().dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self.core.connections.discard(self)
        self.core.admission.settled(self)
        if self.session.authenticated:
            self._log(self._newRequestId()).info("connection closed")
        else:
            self.core.refusals.record(
                self.session.peerHost, self._closedBecause or "closed before auth"
            )
        self.core.runs.forget(self)
        self.core.transfers.forget(self)
        if self._heartbeat is not None:
            self._heartbeat.stop()
        if self._authDeadline is not None and self._authDeadline.active():
            self._authDeadline.cancel()
        # not AMP's connectionLost, which logs a line per connection
        amp.BinaryBoxProtocol.connectionLost(self, reason)
        self.transport = None

    def authenticated(self) -> None:
        """Called by ``auth`` on success: the auth deadline no longer applies."""
        if self._authDeadline is not None and self._authDeadline.active():
            self._authDeadline.cancel()
        self.core.admission.settled(self)

    def _authTimedOut(self) -> None:
        self._closeBeforeAuth("no successful auth in time")

    # Dispatch

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        """A box that is no command, answer or error we asked for ends the connection."""
        if not self.session.authenticated:
            self._preAuthBoxes += 1
            if self._preAuthBoxes > MAX_PRE_AUTH_BOXES:
                self._closeBeforeAuth(f"more than {MAX_PRE_AUTH_BOXES} boxes without auth")
                return
        try:
            super().ampBoxReceived(box)
        except Exception:
            self.session.violations += 1
            if self.session.authenticated:
                self._log(self._newRequestId()).warn("malformed box; closing the connection")
            else:
                self._closedBecause = "a malformed box"
            self.transport.loseConnection()

    def dispatchCommand(self, box: amp.AmpBox) -> Deferred[amp.AmpBox]:
        answer = Deferred.fromCoroutine(self._answer(box))
        if amp.ASK not in box:
            answer.addErrback(lambda _: None)
        return answer

    def _log(self, requestId: str) -> RequestLog:
        return RequestLog(requestId, self.session.clientId, self.session.peer)

    def _newRequestId(self) -> str:
        return self.core.requestIds.next()

    def _requestIdOf(self, box: amp.AmpBox) -> str:
        given = box.get(REQUEST_ID, b"").decode("utf-8", "replace")
        return given if _REQUEST_ID.fullmatch(given) else self._newRequestId()

    def _admit(self, name: str, log: RequestLog) -> tuple[type[Request], Any]:
        """The command and responder for C{name}, if this session may call it."""
        if self.session.authenticated and not self.core.authenticator.stillValid(
            self.session.clientId, self.session.credentialStamp
        ):
            self.session.revoked = True
            self.core.metrics.increment("auth.revoked")
            raise BackupRemoteError(AUTH_FAILED, REVOKED)
        entry = self.responders.get(name.encode("utf-8"))
        if entry is None or not entry[0].preAuth:
            if not self.session.authenticated:
                raise BackupRemoteError(
                    AUTH_REQUIRED, "authenticate with `auth` before any other command"
                )
        if entry is None:
            raise BackupRemoteError(UNKNOWN_COMMAND, f"unknown command {name!r}")
        command = entry[0]
        if command.feature is not None and self.session.authenticated:
            self.core.authenticator.recheck(
                self.session.license, self.session.clientId, command.feature, log.fields()
            )
        return entry

    async def _answer(self, box: amp.AmpBox) -> amp.AmpBox:
        requestId = self._requestIdOf(box)
        log = self._log(requestId)
        rawName = box.get(amp.COMMAND, b"").decode("utf-8", "replace")
        name = rawName if _COMMAND_NAME.fullmatch(rawName) else "?"
        try:
            command, responder = self._admit(name, log)
            try:
                arguments = command.parseArguments(box, self)
            except InvalidValue as invalid:
                fields = invalid.fields()
                listed = "; ".join(f"{k} {v}" for k, v in sorted(fields.items()))
                raise BackupRemoteError(
                    VALIDATION_FAILED, f"invalid {name} request: {listed}",
                    details={"fields": fields},
                ) from None
            except Exception:
                raise BackupRemoteError(
                    BAD_REQUEST, f"malformed or missing arguments for {name}"
                ) from None
            arguments.pop("requestId", None)
            result = responder(RequestContext(requestId, self.session, log), **arguments)
            if isawaitable(result):
                result = await result
            answer = command.makeResponse(result, self)
            answer[REQUEST_ID] = requestId.encode("ascii")
            return answer
        except BackupRemoteError as error:
            refusal = error
        except Exception:
            log.failure("{command} failed unexpectedly", Failure(), command=name)
            refusal = BackupRemoteError(INTERNAL_ERROR, "the server met an unexpected error")
        remoteError = self._refuse(refusal, name, requestId)
        if remoteError.fatal and amp.ASK not in box:
            # no answer box will carry the closing QuitBox: close here
            self.transport.loseConnection()
        raise remoteError

    def _refuse(
        self, error: BackupRemoteError, name: str, requestId: str
    ) -> amp.RemoteAmpError:
        session = self.session
        if error.code in _VIOLATIONS and not session.authenticated:
            session.violations += 1
        config = self.core.config
        closing = (
            session.revoked
            or session.violations >= config.maxViolationsPerConnection
            or session.failedAuths >= config.maxFailedAuthsPerConnection
        )
        self.core.metrics.increment(f"errors.{error.code}")
        if closing and not session.authenticated:
            self._closedBecause = "too many refused commands or failed auths"
        if error.code in _SUMMARISED and not session.authenticated:
            self.core.refusals.record(session.peerHost, f"{name} refused: {error.code}")
        else:
            self._log(requestId).warn(
                "{command} refused: {errorCode}{closing}",
                command=name, errorCode=error.code,
                closing="; closing the connection" if closing else "",
            )
        return amp.RemoteAmpError(
            error.code.encode("ascii"), error.toDescription(requestId), fatal=closing
        )
