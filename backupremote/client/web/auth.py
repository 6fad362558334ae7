"""
Who may use the dashboard: the login token, sessions and CSRF tokens.

The token is the file C{web.token} in the client's folder (its data
folder), mode 0600, made at the daemon's first start with the web on;
whoever can read it may log in. A login makes a session: a random id in an
C{HttpOnly SameSite=Strict} cookie (C{Secure} on TLS) and a CSRF token that
every action's form carries back. Sessions live in the daemon's memory
only: a restart logs everybody out. Failed logins are limited per address.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator

from attrs import define, frozen
from twisted.internet.interfaces import IReactorTime
from twisted.python.filepath import FilePath

from backupremote.configfile import configError
from backupremote.filewriting import writeNewFile
from backupremote.private import refuseShared

#: The token's file, in the client's data folder.
TOKEN_FILE = "web.token"
#: Seconds a session lasts (from its login).
SESSION_LIFETIME = 12 * 3600.0
#: Failed logins an address may make in L{FAILURE_WINDOW} seconds.
MAX_FAILURES = 5
FAILURE_WINDOW = 300.0


def loadToken(folder: FilePath) -> str:
    """The login token in C{folder}, made (0600) if there is none yet."""
    path = folder.child(TOKEN_FILE)
    if not path.exists():
        writeNewFile(path, (secrets.token_urlsafe(32) + "\n").encode("ascii"))
    refuseShared(path, "dashboard token file")
    token = path.getContent().decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise configError(f"the dashboard token in {path.path} is shorter than 16 "
                          "characters: remove the file, and the daemon makes a new one")
    return token


@frozen
class Session:
    """One login: its cookie value, its CSRF token, and who it is in the log."""

    id: str
    csrf: str
    #: how the log names the person: the session's short name and address
    who: str
    expiresAt: float

    def checkCSRF(self, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(given.encode(), self.csrf.encode())


@define
class Sessions:
    """The sessions of one dashboard, and the login check."""

    clock: IReactorTime
    token: str
    lifetime: float = SESSION_LIFETIME
    _sessions: dict[str, Session] = {}
    _failures: dict[str, list[float]] = {}

    def __attrs_post_init__(self) -> None:
        self._sessions = {}
        self._failures = {}

    def login(self, given: str, address: str) -> Session | None:
        """A new session if C{given} is the token; C{None} otherwise (counted)."""
        if self.blocked(address):
            return None
        if not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            self._failures.setdefault(address, []).append(self.clock.seconds())
            return None
        self._failures.pop(address, None)
        sessionId = secrets.token_urlsafe(32)
        short = hashlib.sha256(sessionId.encode()).hexdigest()[:8]
        session = Session(sessionId, secrets.token_urlsafe(32), f"web session {short} from "
                          f"{address}", self.clock.seconds() + self.lifetime)
        self._sessions[sessionId] = session
        return session

    def blocked(self, address: str) -> bool:
        """Whether C{address} failed too often lately."""
        since = self.clock.seconds() - FAILURE_WINDOW
        recent = [at for at in self._failures.get(address, []) if at > since]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return len(recent) >= MAX_FAILURES

    def get(self, sessionId: str | None) -> Session | None:
        """The live session of that cookie value, if any."""
        if not sessionId:
            return None
        session = self._sessions.get(sessionId)
        if session is None:
            return None
        if session.expiresAt <= self.clock.seconds():
            del self._sessions[sessionId]
            return None
        return session

    def end(self, sessionId: str) -> None:
        self._sessions.pop(sessionId, None)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))
