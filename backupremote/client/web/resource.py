"""
The dashboard as one C{twisted.web} resource: routes, login, CSRF,
security headers, server-sent events and the shipped assets.

    GET  /login, POST /login, POST /logout
    GET  /servers /schedules /runs /runs/RUNID /queue      (login needed)
    GET  /events                                          (text/event-stream)
    POST /schedules/ID/run-now  /schedules/ID/pause  /schedules/ID/resume
    POST /runs/RUNID/cancel     /queue/ID/retry        (login and CSRF token)
    GET  /static/dashboard.css  /static/dashboard.js

A page without a session redirects to C{/login}; an action without the
session's CSRF token is refused (403) and logged. Every action is written
to the client's log with the session that did it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlsplit

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from backupremote.client.web import pages
from backupremote.client.web.auth import Session, Sessions
from backupremote.client.web.backend import DashboardBackend
from backupremote.client.web.events import serverSentEvent
from backupremote.protocol.errors import CONFLICT, NOT_FOUND, BackupRemoteError

_log = Logger(namespace="backupremote.client.web")

COOKIE = b"backupremote_session"
#: The policy of every answer: nothing inline, nothing from elsewhere.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATIC = {"dashboard.css": b"text/css; charset=utf-8",
          "dashboard.js": b"text/javascript; charset=utf-8"}
#: Open event streams at most (each holds a connection).
MAX_STREAMS = 32
#: Seconds between two comments on an idle event stream (keeps proxies and
#: the browser from timing it out).
STREAM_KEEPALIVE = 20.0
_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_ACTIONS: dict[tuple[str, str], str] = {
    ("schedules", "run-now"): "runNow", ("schedules", "pause"): "pause",
    ("schedules", "resume"): "resume", ("runs", "cancel"): "cancel",
    ("queue", "retry"): "retry"}


class Dashboard(Resource):
    """The whole dashboard; give it to a C{Site}."""

    isLeaf = True

    def __init__(self, backend: DashboardBackend, sessions: Sessions) -> None:
        super().__init__()
        self.backend = backend
        self.sessions = sessions
        self._flash: dict[str, tuple[str, bool]] = {}
        self.streams: set[Request] = set()
        self._keepalive = LoopingCall(self._ping)
        self._keepalive.clock = backend.clock
        self._assets = {name: resources.files("backupremote.client.web").joinpath(
            "static", name).read_bytes() for name in STATIC}

    # The frame of every answer

    def render(self, request: Request) -> Any:
        _headers(request)
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        while segments and segments[-1] == "":
            segments.pop()
        method = request.method.decode("ascii", "replace")
        if segments[:1] == ["static"] and method in ("GET", "HEAD"):
            return self._static(request, segments[1:])
        if segments == ["login"]:
            return self._login(request) if method == "POST" else self._page(
                request, lambda: pages.loginPage(None, _arg(request, "next") or "/schedules"))
        session = self.sessions.get(_cookie(request))
        if session is None:
            if method == "GET" and segments != ["events"]:
                target = quote("/" + "/".join(segments), safe="/")
                return _redirect(request, f"/login?next={target}")
            request.setResponseCode(401 if segments == ["events"] else 403)
            return b"log in first\n"
        if method == "POST":
            return self._action(request, session, segments)
        if method not in ("GET", "HEAD"):
            request.setResponseCode(405)
            return b""
        if segments == ["events"]:
            return self._events(request, session)
        return self._view(request, session, segments)

    def _page(self, request: Request, make: Callable[[], Any],
              code: int = 200) -> Any:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _finish(request, pages.render(make()))

    # Login

    def _login(self, request: Request) -> Any:
        address = _peer(request)
        if not _sameOrigin(request):
            _log.warn("dashboard login refused: a form from another site ({address})",
                      address=address)
            request.setResponseCode(403)
            return b"refused: the form came from another site\n"
        next = _safeNext(_arg(request, "next"))
        if self.sessions.blocked(address):
            _log.warn("dashboard login refused: too many failures from {address}",
                      address=address)
            return self._page(request, lambda: pages.loginPage(
                "Too many failed logins from this address: wait a few minutes.", next), 429)
        session = self.sessions.login(_arg(request, "token") or "", address)
        if session is None:
            _log.warn("dashboard login failed from {address}", address=address)
            return self._page(request, lambda: pages.loginPage(
                "That is not the token of this client.", next), 403)
        _log.info("dashboard login: {who}", who=session.who)
        request.addCookie(COOKIE, session.id.encode("ascii"), path=b"/", httpOnly=True,
                          secure=request.isSecure(), sameSite="strict")
        return _redirect(request, next)

    # Pages

    def _view(self, request: Request, session: Session, segments: list[str]) -> Any:
        # the script's reload of a page's main part leaves the message of the
        # last action to the page the browser is loading
        partial = request.getHeader(b"x-dashboard-partial") is not None
        flash = None if partial else self._flash.pop(session.id, None)
        backend = self.backend
        csrf = session.csrf

        async def servers() -> Any:
            return pages.serversPage(await backend.serverViews(), backend.now(), csrf, flash)

        async def schedules() -> Any:
            return pages.schedulesPage(await backend.scheduleViews(), csrf, flash)

        async def runs() -> Any:
            return pages.runsPage(await backend.activeRuns(), await backend.history(),
                                  await backend.scheduleNames(), csrf, flash)

        async def queue() -> Any:
            return pages.queuePage(await backend.queueItems(), csrf, flash)

        async def run(runId: str) -> Any:
            job, steps = await backend.run(runId)
            names = await backend.scheduleNames()
            return pages.runPage(job, steps, names.get(job.scheduleId or ""),
                                 backend.live.progress.get(runId), csrf, flash)

        if segments == []:
            return _redirect(request, "/schedules")
        routes: dict[str, Callable[[], Awaitable[Any]]] = {
            "servers": servers, "schedules": schedules, "runs": runs, "queue": queue}
        if len(segments) == 1 and segments[0] in routes:
            work = routes[segments[0]]()
        elif len(segments) == 2 and segments[0] == "runs" and _ID.fullmatch(segments[1]):
            work = run(segments[1])
        else:
            return self._page(request, lambda: pages.errorPage(
                "Not found", "There is no such page.", csrf), 404)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return _finish(request, Deferred.fromCoroutine(_rendered(work, csrf)))

    # Actions

    def _action(self, request: Request, session: Session, segments: list[str]) -> Any:
        if segments == ["logout"]:
            if not session.checkCSRF(_arg(request, "csrf")):
                return self._refused(request, session, "logout")
            self.sessions.end(session.id)
            self._flash.pop(session.id, None)
            _log.info("dashboard logout: {who}", who=session.who)
            request.addCookie(COOKIE, b"", path=b"/", httpOnly=True, max_age=b"0",
                              secure=request.isSecure(), sameSite="strict")
            return _redirect(request, "/login")
        name = _ACTIONS.get((segments[0], segments[2])) if len(segments) == 3 else None
        if name is None or not _ID.fullmatch(segments[1]):
            request.setResponseCode(404)
            return b"no such action\n"
        if not session.checkCSRF(_arg(request, "csrf")) or not _sameOrigin(request):
            return self._refused(request, session, f"{name} {segments[1]}")
        target = segments[1]
        backend = self.backend
        act = {"runNow": lambda: backend.runNow(target),
               "pause": lambda: backend.setEnabled(target, False),
               "resume": lambda: backend.setEnabled(target, True),
               "cancel": lambda: backend.cancel(target),
               "retry": lambda: backend.retry(target)}[name]
        back = {"schedules": "/schedules", "runs": f"/runs/{target}",
                "queue": "/queue"}[segments[0]]

        async def perform() -> bytes:
            try:
                done = await act()
            except BackupRemoteError as error:
                _log.warn("dashboard action {action} on {target} by {who} refused: "
                          "{errorCode}: {errorMessage}", action=name, target=target,
                          who=session.who, errorCode=error.code, errorMessage=error.message)
                self._flash[session.id] = (f"{error.message}. {error.action}"
                                           if error.action else error.message, False)
            else:
                _log.info("dashboard action {action} on {target} by {who}: {done}",
                          action=name, target=target, who=session.who, done=done)
                self._flash[session.id] = (done[:1].upper() + done[1:], True)
            return _redirect(request, back)

        return _finish(request, Deferred.fromCoroutine(perform()))

    def _refused(self, request: Request, session: Session, what: str) -> bytes:
        _log.warn("dashboard action {what} by {who} refused: no valid CSRF token",
                  what=what, who=session.who)
        request.setResponseCode(403)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"refused: this form has no valid CSRF token; reload the page and try again\n"

    # Live updates

    def _events(self, request: Request, session: Session) -> Any:
        if len(self.streams) >= MAX_STREAMS:
            request.setResponseCode(503)
            return b"too many open dashboards\n"
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 3000\n\n")
        for progress in list(self.backend.live.progress.values()):
            request.write(serverSentEvent("progress", progress.asJSON()))

        def send(kind: str, data: dict[str, Any]) -> None:
            if self.sessions.get(session.id) is None:
                request.finish()  # logged out, or expired: the stream ends too
                return
            request.write(serverSentEvent(kind, data))

        stop = self.backend.live.listen(send)
        self.streams.add(request)
        if not self._keepalive.running:
            self._keepalive.start(STREAM_KEEPALIVE, now=False)

        def closed(_: Any) -> None:
            stop()
            self.streams.discard(request)
            if not self.streams and self._keepalive.running:
                self._keepalive.stop()

        request.notifyFinish().addBoth(closed)
        return NOT_DONE_YET

    def _ping(self) -> None:
        for request in list(self.streams):
            request.write(b": keep-alive\n\n")

    def closeStreams(self) -> None:
        """End every event stream (the daemon stops)."""
        for request in list(self.streams):
            request.finish()

    # Assets

    def _static(self, request: Request, name: list[str]) -> bytes:
        if len(name) != 1 or name[0] not in STATIC:
            request.setResponseCode(404)
            return b"not found\n"
        request.setHeader(b"content-type", STATIC[name[0]])
        request.setHeader(b"cache-control", b"no-cache")
        return self._assets[name[0]]


async def _rendered(work: Awaitable[Any], csrf: str) -> Any:
    try:
        return await pages.render(await work)
    except BackupRemoteError as error:
        code = 404 if error.code == NOT_FOUND else 409 if error.code == CONFLICT else 500
        return (code, await pages.render(pages.errorPage(
            "Not found" if code == 404 else "Cannot show this", error.message, csrf)))


def _finish(request: Request, result: Deferred[Any]) -> Any:
    def write(body: Any) -> None:
        if isinstance(body, tuple):
            code, body = body
            request.setResponseCode(code)
        if not request.finished and not getattr(request, "_disconnected", False):
            request.write(body)
            request.finish()

    def failed(failure: Any) -> None:
        _log.failure("dashboard request {uri} failed", failure,
                     uri=request.uri.decode("ascii", "replace"))
        if not request.finished and not getattr(request, "_disconnected", False):
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(b"internal error: see the client's log\n")
            request.finish()

    result.addCallbacks(write, failed)
    return NOT_DONE_YET


def _headers(request: Request) -> None:
    request.setHeader(b"content-security-policy", CSP.encode("ascii"))
    request.setHeader(b"x-content-type-options", b"nosniff")
    # not no-referrer: with it, browsers send "Origin: null" on a form post
    request.setHeader(b"referrer-policy", b"same-origin")
    request.setHeader(b"x-frame-options", b"DENY")
    request.setHeader(b"cache-control", b"no-store")
    if request.isSecure():
        request.setHeader(b"strict-transport-security", b"max-age=31536000")


def _redirect(request: Request, location: str) -> bytes:
    request.setResponseCode(303)
    request.setHeader(b"location", location.encode("utf-8"))
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return b"see " + location.encode("utf-8") + b"\n"


def _cookie(request: Request) -> str | None:
    value = request.getCookie(COOKIE)
    return value.decode("ascii", "replace") if value else None


def _arg(request: Request, name: str) -> str | None:
    values = (request.args or {}).get(name.encode("ascii"))
    return values[0].decode("utf-8", "replace") if values else None


def _peer(request: Request) -> str:
    peer = request.getClientAddress()
    host, port = getattr(peer, "host", "?"), getattr(peer, "port", None)
    return f"{host}:{port}" if port is not None else str(host)


def _safeNext(value: str | None) -> str:
    """Where to go after the login: a path of this dashboard only."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/schedules"
    parts = urlsplit(value)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _sameOrigin(request: Request) -> bool:
    """
    A POST's C{Origin} (when the browser sends one) names this dashboard:
    a second line behind the CSRF token and C{SameSite=Strict}.
    """
    origin = request.getHeader(b"origin")
    if origin is None or origin == b"null":
        return origin is None
    host = request.getHeader(b"host")
    return host is not None and urlsplit(origin.decode("ascii", "replace")).netloc == \
        host.decode("ascii", "replace")
