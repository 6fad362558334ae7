"""
The dashboard in a real headless Chromium (Debian's, driven by Playwright)
against a real client daemon and server on 127.0.0.1, both run by twistd:
log in, see a schedule, press "Run now", watch the run reach its end
without reloading the page (server-sent events), read its receipts; an
action without the CSRF token is refused and a page without login
redirects. It also writes the screenshots of docs/dashboard.md.

The browser starts once for this module (and stops at exit).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sqlite3
import tempfile
from typing import Any

from twisted.python.filepath import FilePath

from tests.integration.test_daemons import ProgramTestCase, freePort

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = FilePath(__file__).parent().parent().sibling("docs").child("images")
_browser: list[Any] = []


def browser() -> Any:
    """The module's one Chromium (a fresh profile folder), started on first use."""
    if not _browser:
        from playwright.sync_api import sync_playwright

        profile = tempfile.mkdtemp(prefix="backupremote-chromium-")
        driver = sync_playwright().start()
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 800})

        def stop() -> None:
            context.close()
            driver.stop()
            shutil.rmtree(profile, ignore_errors=True)

        atexit.register(stop)
        _browser.append(context)
    return _browser[0]


class DashboardInBrowserTests(ProgramTestCase):
    timeout = 300

    def setUp(self) -> None:
        super().setUp()
        self.setUpServerAndClient()
        databases = self.folder.child("databases")
        databases.makedirs()
        dbFile = databases.child("shop.sqlite3")
        with sqlite3.connect(dbFile.path) as db:
            db.execute("create table orders (id integer primary key, body text)")
            db.executemany("insert into orders (body) values (?)",
                           [(os.urandom(200).hex(),) for _ in range(20000)])
        serverToml = self.folder.descendant(["server", "server.toml"])
        serverToml.setContent(serverToml.getContent()
                              + f'\n[databases]\nsqlite_roots = ["{databases.path}"]\n'.encode())
        self.webPort = freePort()
        clientToml = self.folder.descendant(["client", "client.toml"])
        clientToml.setContent(clientToml.getContent() + (
            f'\n[web]\nlisten = "tcp:{self.webPort}:interface=127.0.0.1"\n'
            # a delivery that fails fails at once (the retry test)
            '\n[delivery]\nmax_attempts = 1\n').encode())
        self.daemon("backupremote-server", "--config", "server/server.toml")
        config = ("--config", "client/client.toml")
        self.waitFor(lambda: self.tryCli(*config, "db", "add", "shop", "--engine", "sqlite",
                                         "--path", dbFile.path, "--json"),
                     "the server to store the configuration")
        self.schedule = json.loads(self.cli(
            *config, "schedule", "add", "nightly", "--db", "shop", "--daily", "03:00",
            "--tz", "Europe/Berlin", "--json").stdout)
        self.client = self.daemon("backupremote-client", *config)
        token = self.folder.descendant(["client", "web.token"])
        self.waitFor(token.exists, "the daemon to make web.token")
        self.token = token.getContent().decode().strip()
        self.base = f"http://127.0.0.1:{self.webPort}"
        self.context = browser()
        self.context.clear_cookies()
        self.page = self.context.new_page()
        self.addCleanup(self.page.close)

    def tryCli(self, *args: str) -> Any:
        import subprocess

        from tests.integration.test_daemons import program
        done = subprocess.run([program("backupremote"), *args], cwd=self.folder.path,
                              capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else None

    def shot(self, name: str) -> None:
        if os.environ.get("BACKUPREMOTE_SCREENSHOTS"):
            SCREENSHOTS.makedirs(ignoreExistingDirectory=True)
            self.page.screenshot(path=SCREENSHOTS.child(name).path, full_page=True)

    def test_runNowToTheReceipt(self) -> None:
        page = self.page
        self.waitFor(lambda: self.tryGet("/login"), "the dashboard to listen")

        # a page without login redirects to the login, which comes back after
        page.goto(self.base + "/runs")
        self.assertEqual(page.url, self.base + "/login?next=/runs")
        self.shot("dashboard-login.png")
        page.get_by_label("Token").fill("not the token")
        page.get_by_role("button", name="Log in").click()
        self.assertIn("not the token", page.get_by_role("alert").inner_text())
        page.get_by_label("Token").fill(self.token)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(self.base + "/runs")
        cookie = [c for c in self.context.cookies() if c["name"] == "backupremote_session"][0]
        self.assertTrue(cookie["httpOnly"])
        self.assertEqual(cookie["sameSite"], "Strict")

        # the schedule, its next fire with the schedule's zone on hover
        page.get_by_role("link", name="Schedules").click()
        row = page.locator(f'tr[data-schedule-id="{self.schedule["id"]}"]')
        self.assertIn("nightly", row.inner_text())
        self.assertIn("(Europe/Berlin)", row.locator("time").get_attribute("title") or "")
        self.assertEqual(page.evaluate("document.body.dataset.stream"), "open")
        self.shot("dashboard-schedules.png")

        # an action without the CSRF token is refused (with the session cookie)
        refused = self.context.request.post(
            f"{self.base}/schedules/{self.schedule['id']}/run-now", form={"csrf": "forged"},
            max_redirects=0)
        self.assertEqual(refused.status, 403)

        # run now; follow it on the runs page without reloading it
        row.get_by_role("button", name="Run now").click()
        flash = page.get_by_role("status").inner_text()
        runId = re.search(r"Started run ([0-9a-f-]{36}) of schedule nightly", flash)
        self.assertIsNotNone(runId, flash)
        assert runId is not None
        page.get_by_role("link", name="Runs").click()
        page.evaluate("window.notReloaded = true")
        final = page.locator(f'#history tr[data-run-id="{runId.group(1)}"] [data-state]')
        final.wait_for(timeout=120_000)
        self.assertEqual(final.inner_text(), "released")
        self.assertTrue(page.evaluate("window.notReloaded === true"))  # live, not reloaded
        self.shot("dashboard-runs.png")

        # its receipts: the server's hash, and the downloaded copy checked against it
        page.get_by_role("link", name=runId.group(1)[:8]).click()
        receipts = page.locator("#receipts").inner_text()
        self.assertIn("Server", receipts)
        self.assertIn("Downloaded", receipts)
        self.assertIn("matches", receipts)
        hashes = set(re.findall(r"[0-9a-f]{64}", receipts))
        self.assertEqual(len(hashes), 1, receipts)
        self.shot("dashboard-run.png")

        page.get_by_role("link", name="Servers").click()
        self.assertIn("connected", page.locator("tbody").inner_text())
        self.assertIn("days left", page.locator("tbody").inner_text())
        self.shot("dashboard-servers.png")
        page.get_by_role("link", name="Queue").click()
        self.shot("dashboard-queue.png")

        # pause and resume by keyboard: the first Tab reaches "Skip to content"
        page.get_by_role("link", name="Schedules").click()
        page.keyboard.press("Tab")
        self.assertEqual(page.evaluate("document.activeElement.textContent"),
                         "Skip to content")
        row = page.locator(f'tr[data-schedule-id="{self.schedule["id"]}"]')
        row.get_by_role("button", name="Pause").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Paused schedule nightly")
        row.get_by_role("button", name="Resume").focus()
        page.keyboard.press("Enter")
        page.wait_for_selector("text=Resumed schedule nightly")

        # readable at phone width: nothing wider than the screen
        page.set_viewport_size({"width": 390, "height": 844})
        page.reload()
        self.assertLessEqual(page.evaluate("document.documentElement.scrollWidth"), 390)
        self.shot("dashboard-schedules-phone.png")
        page.set_viewport_size({"width": 1280, "height": 800})

        log = self.folder.descendant(["client", "logs", "client.jsonl"]).getContent()
        actions = [json.loads(line.strip(b"\x1e")) for line in log.splitlines()
                   if b"dashboard action" in line]
        self.assertTrue(any(a.get("action") == "runNow" and "web session" in a.get("who", "")
                            for a in actions), actions)
        self.assertNotIn(self.token.encode(), log)

    def logIn(self) -> None:
        self.waitFor(lambda: self.tryGet("/login"), "the dashboard to listen")
        self.page.goto(self.base + "/login?next=/schedules")
        self.page.get_by_label("Token").fill(self.token)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.base + "/schedules")

    def test_runNowToANamedDestinationThenRetryItsDelivery(self) -> None:
        """
        A schedule delivering to a named local destination whose folder is
        missing: run now, its delivery fails (shown on the queue page with
        why); the folder made, Retry delivers it and the run goes on to
        its release, without the CLI.
        """
        page, config = self.page, ("--config", "client/client.toml")
        nas = self.folder.child("nas")
        nas.makedirs()
        self.cli(*config, "dest", "add", "nas", "--type", "local", "--url",
                 f"file://{nas.path}", "--json")
        nas.remove()  # an unmounted share: refused, never created
        schedule = json.loads(self.cli(*config, "schedule", "add", "offsite", "--db", "shop",
                                       "--daily", "04:00", "--dest", "nas", "--json").stdout)
        self.logIn()
        page.goto(self.base + "/schedules")
        row = page.locator(f'tr[data-schedule-id="{schedule["id"]}"]')
        row.get_by_role("button", name="Run now").click()
        flash = page.get_by_role("status").inner_text()
        started = re.search(r"Started run ([0-9a-f-]{36}) of schedule offsite", flash)
        self.assertIsNotNone(started, flash)
        assert started is not None
        runId = started.group(1)

        def failedRow() -> Any:
            page.goto(self.base + "/queue")
            found = page.locator(f'#queue tr[data-run-id="{runId}"]')
            if found.count() == 1 and "failed" in found.inner_text():
                return found
            return None

        failed = self.waitFor(failedRow, "the delivery to fail", timeout=120)
        self.assertIn("nas", failed.inner_text())
        self.assertIn(nas.path, failed.inner_text())  # why: the folder is missing
        self.shot("dashboard-queue-failed.png")

        nas.makedirs()
        nas.chmod(0o700)
        failed.get_by_role("button", name="Retry").click()
        self.assertIn("again", page.get_by_role("status").inner_text())
        page.get_by_role("link", name="Runs").click()
        final = page.locator(f'#history tr[data-run-id="{runId}"] [data-state]')
        final.wait_for(timeout=120_000)
        self.assertEqual(final.inner_text(), "released")
        copies = [p for p in nas.walk() if p.isfile()]
        self.assertEqual(len(copies), 1, copies)
        # the run's receipt names the destination, read back
        page.get_by_role("link", name=runId[:8]).click()
        receipts = page.locator("#receipts").inner_text()
        self.assertIn("nas", receipts)
        page.goto(self.base + "/queue")
        self.assertEqual(page.locator(f'#queue tr[data-run-id="{runId}"]').count(), 0)

    def tryGet(self, path: str) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False
