"""
The dashboard's resources over a real C{Site} on a C{Clock}: each request
goes through twisted.web's own HTTP parsing (a C{StringTransport}), over
the in-memory client store, so cookies, headers and redirects are the ones
a browser gets.
"""

from __future__ import annotations

import re
import stat
from datetime import datetime, time, timezone
from typing import Any
from urllib.parse import urlencode

from attrs import frozen
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request, Site

from backupremote.client.download import DownloadProgress
from backupremote.client.jobs import JobRequest, JobStore, Receipt, now
from backupremote.client.schedules.model import Daily, Schedule
from backupremote.client.schedules.scheduler import RunRequest
from backupremote.client.schedules.store import ScheduleStore
from backupremote.client.web import (
    TOKEN_FILE,
    Dashboard,
    ClientQueue,
    DashboardBackend,
    LiveEvents,
    QueueItem,
    Sessions,
    loadToken,
)
from backupremote.client.web.resource import CSP, STREAM_KEEPALIVE
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from backupremote.protocol.runs import RunEvent
from backupremote.protocol.transfers import FileEntry
from backupremote.testing import MemoryClientStore

UTC = timezone.utc
TOKEN = "a-token-of-the-client-0123456789"
START = datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp()


@frozen
class Response:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[-1] if values else None

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class RecordingStarter:
    def __init__(self) -> None:
        self.started: list[RunRequest] = []
        self.refuse: BackupRemoteError | None = None

    def start(self, request: RunRequest) -> Deferred[Any]:
        if self.refuse is not None:
            raise self.refuse
        self.started.append(request)
        return succeed(None)

    def busySchedules(self) -> Deferred[set[str]]:
        return succeed(set())


class RecordingQueue:
    def __init__(self) -> None:
        self.retried: list[str] = []
        self.list = [QueueItem("d1", "run-1", "nas", "failed", "UPLOAD_FAILED: disk full",
                               retryable=True)]

    def items(self) -> Deferred[list[QueueItem]]:
        return succeed(self.list)

    def retry(self, itemId: str) -> Deferred[Any]:
        self.retried.append(itemId)
        return succeed(None)


class DashboardTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryClientStore()
        self.schedules = ScheduleStore(self.store)
        self.jobs = JobStore(self.store, now(self.clock))
        self.starter = RecordingStarter()
        self.queue = RecordingQueue()
        self.live = LiveEvents()
        self.backend = DashboardBackend(self.clock, self.schedules, self.jobs, [],
                                        self.starter, self.queue, self.live)
        self.sessions = Sessions(self.clock, TOKEN)
        self.dashboard = Dashboard(self.backend, self.sessions)
        self.site = Site(self.dashboard, reactor=self.clock)
        self.site.timeOut = None
        self.logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.schedule = self.successResultOf(self.schedules.add(Schedule(
            id="9d3c2a1b-0000-4000-8000-000000000001", name="nightly",
            rule=Daily((time(3, 0),)), zone="Europe/Berlin", database="db-1"),
            datetime.fromtimestamp(START, UTC)))

    def open(self, method: str, path: str, form: dict[str, str] | None = None,
             cookie: str | None = None, headers: dict[str, str] | None = None,
             secure: bool = False) -> tuple[Any, StringTransport]:
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50123))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", 8470),
                                    peerAddress=IPv4Address("TCP", "127.0.0.1", 50123))
        if secure:
            self.patch(Request, "isSecure", lambda request: True)
        channel.makeConnection(transport)
        body = urlencode(form).encode() if form is not None else b""
        lines = [f"{method} {path} HTTP/1.0", "Host: 127.0.0.1:8470"]
        if cookie:
            lines.append(f"Cookie: backupremote_session={cookie}")
        if form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded",
                      f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        channel.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        return channel, transport

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        channel, transport = self.open(method, path, **kwargs)
        return parse(transport.value())

    def login(self) -> tuple[str, str]:
        """A session: its cookie value and CSRF token."""
        response = self.request("POST", "/login", form={"token": TOKEN, "next": "/schedules"})
        self.assertEqual(response.code, 303)
        cookie = re.match(r"backupremote_session=([^;]+)", response.header("set-cookie") or "")
        assert cookie is not None
        page = self.request("GET", "/schedules", cookie=cookie.group(1))
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        return cookie.group(1), csrf.group(1)

    def messages(self) -> list[str]:
        from twisted.logger import formatEvent
        return [formatEvent(event) for event in self.logged]


def parse(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    code = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Response(code, headers, body)


class LoginTests(DashboardTestCase):
    def test_pageWithoutLoginRedirects(self) -> None:
        """Every page without a session goes to the login, which comes back after."""
        for path in ("/schedules", "/runs", "/queue", "/servers", "/runs/abc"):
            response = self.request("GET", path)
            self.assertEqual(response.code, 303, path)
            self.assertEqual(response.header("location"), f"/login?next={path}")
        self.assertEqual(self.request("GET", "/events").code, 401)

    def test_actionWithoutLoginRefused(self) -> None:
        response = self.request("POST", f"/schedules/{self.schedule.id}/run-now",
                                form={"csrf": "x"})
        self.assertEqual(response.code, 403)
        self.assertEqual(self.starter.started, [])

    def test_loginSetsAStrictHttpOnlyCookie(self) -> None:
        response = self.request("POST", "/login", form={"token": TOKEN, "next": "/runs"})
        self.assertEqual(response.code, 303)
        self.assertEqual(response.header("location"), "/runs")
        cookie = response.header("set-cookie") or ""
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie)
        self.assertIn("Path=/", cookie)
        self.assertNotIn("Secure", cookie)
        self.assertTrue(any("dashboard login: web session" in m for m in self.messages()))

    def test_secureCookieOnTLS(self) -> None:
        response = self.request("POST", "/login", form={"token": TOKEN}, secure=True)
        self.assertIn("Secure", response.header("set-cookie") or "")
        self.assertEqual(response.header("strict-transport-security"), "max-age=31536000")

    def test_wrongTokenRefusedAndLimited(self) -> None:
        for _ in range(5):
            response = self.request("POST", "/login", form={"token": "nope"})
            self.assertEqual(response.code, 403)
            self.assertIn("not the token", response.text)
            self.assertIsNone(response.header("set-cookie"))
        # the right token is refused too now, until the window passes
        self.assertEqual(self.request("POST", "/login", form={"token": TOKEN}).code, 429)
        self.clock.advance(301)
        self.assertEqual(self.request("POST", "/login", form={"token": TOKEN}).code, 303)

    def test_nextStaysOnTheDashboard(self) -> None:
        for evil in ("https://evil.example/", "//evil.example/x", "/\\evil"):
            response = self.request("POST", "/login", form={"token": TOKEN, "next": evil})
            self.assertEqual(response.header("location"), "/schedules")

    def test_loginFromAnotherSiteRefused(self) -> None:
        response = self.request("POST", "/login", form={"token": TOKEN},
                                headers={"Origin": "https://evil.example"})
        self.assertEqual(response.code, 403)

    def test_sessionExpires(self) -> None:
        cookie, _ = self.login()
        self.clock.advance(12 * 3600 + 1)
        self.assertEqual(self.request("GET", "/schedules", cookie=cookie).code, 303)

    def test_logout(self) -> None:
        cookie, csrf = self.login()
        self.assertEqual(self.request("POST", "/logout", cookie=cookie).code, 403)
        response = self.request("POST", "/logout", cookie=cookie, form={"csrf": csrf})
        self.assertEqual(response.header("location"), "/login")
        self.assertEqual(self.request("GET", "/schedules", cookie=cookie).code, 303)


class HeaderTests(DashboardTestCase):
    def test_strictPolicyOnEveryAnswer(self) -> None:
        cookie, _ = self.login()
        for response in (self.request("GET", "/login"),
                         self.request("GET", "/schedules", cookie=cookie),
                         self.request("GET", "/static/dashboard.js"),
                         self.request("GET", "/nothing", cookie=cookie)):
            self.assertEqual(response.header("content-security-policy"), CSP)
            self.assertEqual(response.header("x-content-type-options"), "nosniff")
            self.assertEqual(response.header("x-frame-options"), "DENY")
        self.assertNotIn("unsafe-inline", CSP)
        self.assertIn("script-src 'self'", CSP)

    def test_noInlineScriptOrStyle(self) -> None:
        cookie, _ = self.login()
        for path in ("/schedules", "/runs", "/queue", "/servers"):
            page = self.request("GET", path, cookie=cookie).text
            self.assertNotRegex(page, r"<script(?![^>]*\bsrc=)")
            self.assertNotIn("<style", page)
            self.assertNotIn(" style=", page)
            self.assertNotRegex(page, r"<[^>]+\son[a-z]+=")

    def test_assetsShipped(self) -> None:
        css = self.request("GET", "/static/dashboard.css")
        self.assertEqual(css.code, 200)
        self.assertEqual(css.header("content-type"), "text/css; charset=utf-8")
        self.assertEqual(self.request("GET", "/static/../web.token").code, 404)
        self.assertEqual(self.request("GET", "/static/other.js").code, 404)

    def test_tokenNeverRendered(self) -> None:
        cookie, _ = self.login()
        for path in ("/login", "/schedules", "/runs", "/queue", "/servers"):
            response = self.request("GET", path, cookie=cookie)
            self.assertNotIn(TOKEN.encode(), response.body)
            self.assertNotIn(cookie.encode(), response.body)


class ActionTests(DashboardTestCase):
    def test_actionWithoutCSRFRefused(self) -> None:
        cookie, csrf = self.login()
        for form in ({}, {"csrf": "wrong"}):
            response = self.request("POST", f"/schedules/{self.schedule.id}/run-now",
                                    cookie=cookie, form=form)
            self.assertEqual(response.code, 403)
        self.assertEqual(self.starter.started, [])
        self.assertTrue(any("refused: no valid CSRF token" in m for m in self.messages()))

    def test_actionFromAnotherOriginRefused(self) -> None:
        cookie, csrf = self.login()
        response = self.request("POST", f"/schedules/{self.schedule.id}/run-now",
                                cookie=cookie, form={"csrf": csrf},
                                headers={"Origin": "http://evil.example"})
        self.assertEqual(response.code, 403)
        self.assertEqual(self.starter.started, [])

    def test_runNow(self) -> None:
        cookie, csrf = self.login()
        response = self.request("POST", f"/schedules/{self.schedule.id}/run-now",
                                cookie=cookie, form={"csrf": csrf},
                                headers={"Origin": "http://127.0.0.1:8470"})
        self.assertEqual(response.code, 303)
        self.assertEqual(response.header("location"), "/schedules")
        [request] = self.starter.started
        self.assertEqual((request.scheduleId, request.databaseConfigId, request.fireTime),
                         (self.schedule.id, "db-1", None))
        page = self.request("GET", "/schedules", cookie=cookie).text
        self.assertIn(f"Started run {request.runId} of schedule nightly", page)
        self.assertNotIn("Started run", self.request("GET", "/schedules", cookie=cookie).text)
        [line] = [m for m in self.messages() if "dashboard action runNow" in m]
        self.assertIn("by web session ", line)
        self.assertIn("from 127.0.0.1:50123", line)

    def test_refusedActionSaysWhy(self) -> None:
        cookie, csrf = self.login()
        self.starter.refuse = BackupRemoteError(CONFIG_INVALID, "no such destination")
        self.request("POST", f"/schedules/{self.schedule.id}/run-now", cookie=cookie,
                     form={"csrf": csrf})
        page = self.request("GET", "/schedules", cookie=cookie).text
        self.assertIn('role="alert"', page)
        self.assertIn("no such destination", page)

    def test_pauseAndResume(self) -> None:
        cookie, csrf = self.login()
        events: list[tuple[str, Any]] = []
        self.live.listen(lambda kind, data: events.append((kind, data)))
        self.request("POST", "/schedules/nightly/pause", cookie=cookie, form={"csrf": csrf})
        self.assertFalse(self.successResultOf(self.schedules.get("nightly")).enabled)
        page = self.request("GET", "/schedules", cookie=cookie).text
        self.assertIn(">Resume</button>", page)
        self.assertIn("Paused schedule nightly", page)
        self.request("POST", "/schedules/nightly/resume", cookie=cookie, form={"csrf": csrf})
        self.assertTrue(self.successResultOf(self.schedules.get("nightly")).enabled)
        self.assertEqual([kind for kind, _ in events], ["schedule", "schedule"])

    def test_retry(self) -> None:
        cookie, csrf = self.login()
        page = self.request("GET", "/queue", cookie=cookie).text
        self.assertIn("UPLOAD_FAILED: disk full", page)
        self.assertIn('action="/queue/d1/retry"', page)
        response = self.request("POST", "/queue/d1/retry", cookie=cookie, form={"csrf": csrf})
        self.assertEqual(response.header("location"), "/queue")
        self.assertEqual(self.queue.retried, ["d1"])

    def test_unknownActionAndMethod(self) -> None:
        cookie, csrf = self.login()
        self.assertEqual(self.request("POST", "/schedules/nightly/delete", cookie=cookie,
                                      form={"csrf": csrf}).code, 404)
        self.assertEqual(self.request("DELETE", "/schedules", cookie=cookie).code, 405)


class PageTests(DashboardTestCase):
    def test_scheduleNextFireInBothZones(self) -> None:
        cookie, _ = self.login()
        page = self.request("GET", "/schedules", cookie=cookie).text
        self.assertIn("nightly", page)
        self.assertIn("daily at 03:00", page)
        # 03:00 in Berlin on 30 November is 02:00 UTC; the hover names the zone
        self.assertIn('datetime="2026-11-30T02:00:00Z"', page)
        self.assertIn('title="2026-11-30 03:00 CET (Europe/Berlin)"', page)
        self.assertIn('<label', self.request("GET", "/login").text)

    def test_historyAndReceipts(self) -> None:
        cookie, _ = self.login()
        job, _ = self.successResultOf(self.jobs.create(JobRequest(
            runId="run-1", databaseConfigId="db-1", scheduleId=self.schedule.id), "/work"))
        for state in ("running", "completed"):
            job = self.successResultOf(self.jobs.advance(job, state))
        entry = FileEntry(fileId="f", name="db.sqlite3.zst", sizeBytes=2048,
                          sha256="ab" * 32, chunkSize=65536, chunkCount=1)
        job = self.successResultOf(self.jobs.advance(job, "downloaded", artifact=entry,
                                                     artifactPath="/work/run-1/db.zst"))
        at = datetime.fromtimestamp(START, UTC)
        for state, receipts in (("verified", ()), ("delivered", (Receipt(
                "nas", "db.sqlite3.zst", 2048, "ab" * 32, "sftp+read-back", at),))):
            job = self.successResultOf(self.jobs.advance(job, state, receipts=receipts))
        runs = self.request("GET", "/runs", cookie=cookie).text
        self.assertIn('href="/runs/run-1"', runs)
        self.assertIn("nightly", runs)
        detail = self.request("GET", "/runs/run-1", cookie=cookie).text
        self.assertIn("Downloaded", detail)
        self.assertEqual(detail.count("ab" * 32), 3)  # server, downloaded, nas
        self.assertIn("sftp+read-back", detail)
        self.assertIn("matches", detail)
        self.assertEqual(self.request("GET", "/runs/nope", cookie=cookie).code, 404)

    def test_activeRunLiveProgress(self) -> None:
        cookie, csrf = self.login()
        self.successResultOf(self.jobs.create(JobRequest(
            runId="run-2", databaseConfigId="db-1", scheduleId=self.schedule.id), "/work"))
        watcher = self.live.watcher("run-2")
        watcher.runEvent(RunEvent("run-2", 3, "progress", "dump", 512, datetime.now(UTC),
                                  totalEstimate=1024))
        page = self.request("GET", "/runs", cookie=cookie).text
        self.assertIn('data-progress="run-2"', page)
        self.assertIn('value="50"', page)
        self.assertIn(">dump<", page)
        self.assertIn('action="/runs/run-2/cancel"', page)

    def test_servers(self) -> None:
        cookie, _ = self.login()
        page = self.request("GET", "/servers", cookie=cookie).text
        self.assertIn("client.toml names no server", page)


class EventStreamTests(DashboardTestCase):
    def test_streamsWhatTheRunnerTells(self) -> None:
        cookie, _ = self.login()
        channel, transport = self.open("GET", "/events", cookie=cookie)
        self.assertIn(b"content-type: text/event-stream", transport.value().lower())
        self.assertEqual(self.live.listeners, 1)
        watcher = self.live.watcher("run-3")
        watcher.runEvent(RunEvent("run-3", 1, "progress", "compression", 10, datetime.now(UTC)))
        watcher.downloadProgress(DownloadProgress("run-3", "x", "downloading", 5, 20, 1, 4))
        stream = transport.value().decode()
        self.assertIn('event: job\ndata: {"finished": false, "runId": "run-3"', stream)
        self.assertIn('"stage": "compression"', stream)
        self.assertIn('"percent": 25', stream)
        transport.clear()
        self.clock.advance(STREAM_KEEPALIVE)
        self.assertEqual(transport.value(), b": keep-alive\n\n")
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.live.listeners, 0)
        self.assertEqual(self.dashboard.streams, set())

    def test_streamEndsWithTheSession(self) -> None:
        cookie, csrf = self.login()
        channel, transport = self.open("GET", "/events", cookie=cookie)
        self.request("POST", "/logout", cookie=cookie, form={"csrf": csrf})
        self.live.publish("job", {"runId": "x"})
        self.assertEqual(self.live.listeners, 0)
        self.assertNotIn(b'"runId": "x"', transport.value())


class ClientQueueTests(SynchronousTestCase):
    """The queue page's items and retry over the job store and the real delivery queue."""

    def setUp(self) -> None:
        from tests.client.delivery.helpers import QueueHarness

        self.h = QueueHarness(FilePath(self.mktemp()))
        self.successResultOf(self.h.queue.start())
        self.jobs = JobStore(self.h.store, now(self.h.clock))
        self.submitted: list[JobRequest] = []
        submitted = self.submitted

        class Runner:
            def submit(self, request: JobRequest) -> Deferred[Any]:
                submitted.append(request)
                return succeed(None)

        self.queue = ClientQueue(self.jobs, Runner(), self.h.queue)  # type: ignore[arg-type]

    def job(self, runId: str, *states: str, **failed: Any) -> Any:
        job, _ = self.successResultOf(self.jobs.create(
            JobRequest(runId=runId, databaseConfigId="d"), "/w"))
        for state in states:
            job = self.successResultOf(self.jobs.advance(job, state))
        if failed:
            job = self.successResultOf(self.jobs.advance(job, "failed", **failed))
        return job

    def test_aFailedDeliveryRetriedThenItsRunTakenUp(self) -> None:
        from backupremote.protocol.errors import CONFLICT

        self.job("r1", "running", "completed")  # downloading
        nas = self.h.destination("nas")
        self.h.destinations["nas"].failNext("put", BackupRemoteError(
            "CONFIG_INVALID", "the folder /srv/nas does not exist"))
        job, path = self.h.artifact("r2")
        self.successResultOf(self.h.queue.enqueue(job, path, [nas]))
        self.job("r2", "running", "completed", "downloaded", "verified", failedStep="deliver",
                 errorCode="CONFIG_INVALID", errorMessage="delivery to nas failed")
        items = self.successResultOf(self.queue.items())
        self.assertEqual([(i.runId, i.destination, i.state, i.retryable) for i in items],
                         [("r1", "(no destination)", "downloading", False),
                          ("r2", "nas", "failed", True)])
        failed = items[1]
        self.assertIn("does not exist", failed.reason or "")
        self.assertNotEqual(failed.id, "r2", "the delivery, not its job")
        # retried: delivered through the queue, and the run taken up again to its release
        self.successResultOf(self.queue.retry(failed.id))
        self.h.clock.advance(0)
        [item] = self.successResultOf(self.h.queue.deliveries.forRun("r2"))
        self.assertEqual(item.state, "delivered")
        self.assertEqual([(r.runId, r.goal) for r in self.submitted], [("r2", "released")])
        self.assertNotIn(failed.id, [i.id for i in self.successResultOf(self.queue.items())])
        self.assertEqual(self.failureResultOf(self.queue.retry(failed.id),
                                              BackupRemoteError).value.code, CONFLICT)
        self.assertEqual(self.failureResultOf(self.queue.retry("no-such-transfer"),
                                              BackupRemoteError).value.code, "NOT_FOUND")

    def test_aRunFailedAtItsDownloadIsRetriedFromThere(self) -> None:
        self.job("r1", "running", "completed", failedStep="download",
                 errorCode="TIMEOUT", errorMessage="the server did not answer")
        [item] = self.successResultOf(self.queue.items())
        self.assertEqual((item.id, item.state, item.retryable), ("r1", "failed", True))
        self.successResultOf(self.queue.retry("r1"))
        self.assertEqual([(r.runId, r.goal) for r in self.submitted], [("r1", "released")])


class TokenTests(SynchronousTestCase):
    def test_madePrivateOnceThenKept(self) -> None:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        token = loadToken(folder)
        self.assertGreaterEqual(len(token), 40)
        path = folder.child(TOKEN_FILE)
        self.assertEqual(stat.S_IMODE(path.getPermissions().shorthand() and
                                      __import__("os").stat(path.path).st_mode), 0o600)
        self.assertEqual(loadToken(folder), token)
        path.chmod(0o644)
        self.assertRaises(BackupRemoteError, loadToken, folder)
