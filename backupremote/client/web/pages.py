"""
The dashboard's pages as HTML, made with C{twisted.web.template} (every
value escaped). Each page reads whole without JavaScript; C{dashboard.js}
only makes it live (times in the browser's zone, progress by server-sent
events). No page shows a secret: nothing here reads one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from twisted.web.template import Tag, flattenString, tags

from backupremote.client.expiry import daysLeft
from backupremote.client.jobs import CANCELLED, FAILED, Job
from backupremote.client.schedules.model import describeRule
from backupremote.client.schedules.nextfire import zoneNamed
from backupremote.client.web.backend import QueueItem, ScheduleView, ServerView
from backupremote.client.web.events import LiveProgress
from backupremote.protocol.errors import lookup

UTC = timezone.utc
NAV = (("/schedules", "Schedules"), ("/runs", "Runs"), ("/queue", "Queue"),
       ("/servers", "Servers"))


def render(tag: Tag) -> Any:
    """Fires with the page's bytes."""
    return flattenString(None, tag).addCallback(lambda body: b"<!DOCTYPE html>\n" + body)


def layout(title: str, path: str, body: Iterable[Any], csrf: str | None,
           flash: tuple[str, bool] | None = None, watch: str | None = None) -> Tag:
    """The frame of every page: head, navigation, the message of the last action."""
    head = tags.head(
        tags.meta(charset="utf-8"),
        tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
        tags.title(f"{title} · backupremote"),
        tags.link(rel="stylesheet", href="/static/dashboard.css"),
        tags.script(src="/static/dashboard.js", defer="defer"),
    )
    header = tags.header(tags.a("Skip to content", href="#main", class_="skip"),
                         tags.span("backupremote", class_="brand"))
    if csrf is not None:
        header(tags.nav(tags.ul([tags.li(tags.a(
            label, href=href, **({"aria-current": "page"} if path.startswith(href) else {})))
            for href, label in NAV]), **{"aria-label": "Main"}),
            actionForm("/logout", csrf, "Log out", "secondary"))
    main = Tag("main")(id="main", tabindex="-1")(tags.h1(title))  # not in tags: HTML5
    if watch is not None:  # what the script reloads this part for
        main.attributes[f"data-watch-{watch}"] = "on"
    if flash is not None:
        text, ok = flash
        main(tags.p(text, class_="flash ok" if ok else "flash error",
                    role="status" if ok else "alert"))
    main(*body)
    return tags.html(lang="en")(head, tags.body(**({"data-live": "on"} if csrf else {}))(
        header, main))


def actionForm(action: str, csrf: str, label: str, kind: str = "",
               describedBy: str | None = None) -> Tag:
    """A POST form of one button, carrying the session's CSRF token."""
    button = tags.button(label, type="submit", class_=kind) if kind else tags.button(
        label, type="submit")
    if describedBy:
        button.attributes["aria-describedby"] = describedBy
    return tags.form(method="post", action=action, class_="action")(
        tags.input(type="hidden", name="csrf", value=csrf), button)


def instant(value: datetime | None, zone: str | None = None) -> Tag | str:
    """
    A C{<time>}: written in the daemon's zone, put in the reader's zone by
    the script; the hover shows it in C{zone} (the schedule's).
    """
    if value is None:
        return "—"
    local = value.astimezone()
    tag = tags.time(f"{local:%Y-%m-%d %H:%M} {local.tzname()}",
                    datetime=value.astimezone(UTC).isoformat().replace("+00:00", "Z"))
    if zone:
        inZone = value.astimezone(zoneNamed(zone))
        tag.attributes["title"] = f"{inZone:%Y-%m-%d %H:%M} {inZone.tzname()} ({zone})"
        tag.attributes["data-zone"] = zone
    else:
        tag.attributes["title"] = f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    return tag


def size(count: int | None) -> str:
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def table(caption: str, headings: Sequence[str], rows: list[Tag], empty: str,
          **attributes: Any) -> Tag:
    if not rows:
        return tags.p(empty, class_="empty", **attributes)
    return tags.div(class_="scroll", **attributes)(tags.table(
        tags.caption(caption),
        tags.thead(tags.tr([tags.th(h, scope="col") for h in headings])),
        tags.tbody(rows)))


def stateBadge(state: str) -> Tag:
    kind = ("bad" if state in (FAILED, CANCELLED, "failed", "retrying")
            else "good" if state in ("delivered", "released", "completed") else "busy")
    return tags.span(state, class_=f"badge {kind}", **{"data-state": state})


# -- the pages


def loginPage(problem: str | None, next: str) -> Tag:
    body = [tags.p("Paste the token from the file ", tags.code("web.token"),
                   " in the client's folder."),
            tags.form(method="post", action="/login", class_="login")(
                tags.label("Token", for_="token"),
                tags.input(id="token", name="token", type="password", required="required",
                           autocomplete="current-password", autofocus="autofocus"),
                tags.input(type="hidden", name="next", value=next),
                tags.button("Log in", type="submit"))]
    return layout("Log in", "/login", body, None, (problem, False) if problem else None)


def serversPage(servers: list[ServerView], now: datetime, csrf: str,
                flash: tuple[str, bool] | None) -> Tag:
    rows = []
    for server in servers:
        if server.licenseExpiresAt is not None:
            days = daysLeft(server.licenseExpiresAt, now)
            left = f" ({days} day{'' if days == 1 else 's'} left)" if days else " (expired)"
            license: Any = tags.span(instant(server.licenseExpiresAt), left)
        else:
            license = server.problem or "—"
        rows.append(tags.tr(
            tags.th(server.name, scope="row"), tags.td(server.address),
            tags.td(stateBadge("connected" if server.connected else "not connected")),
            tags.td(server.licensee or "—"), tags.td(license)))
    return layout("Servers", "/servers", [table(
        "The servers of client.toml", ("Server", "Address", "Connection", "Licensee",
                                       "Licence expires"), rows,
        "client.toml names no server.")], csrf, flash)


def schedulesPage(schedules: list[ScheduleView], csrf: str,
                  flash: tuple[str, bool] | None) -> Tag:
    rows = []
    for view in schedules:
        s = view.schedule
        label = f"sched-{s.id}"
        toggle = ("pause", "Pause") if s.enabled else ("resume", "Resume")
        rows.append(tags.tr(**{"data-schedule-id": s.id})(
            tags.th(s.name, scope="row", id=label),
            tags.td(describeRule(s.rule), tags.br(), tags.small(s.zone)),
            tags.td(instant(view.nextFire, s.zone) if s.enabled else "paused"),
            tags.td(", ".join(s.destinations) or "—"),
            tags.td(stateBadge("enabled" if s.enabled else "paused")),
            tags.td(class_="actions")(
                actionForm(f"/schedules/{s.id}/run-now", csrf, "Run now", "",
                           describedBy=label),
                actionForm(f"/schedules/{s.id}/{toggle[0]}", csrf, toggle[1], "secondary",
                           describedBy=label))))
    return layout("Schedules", "/schedules", [table(
        "Schedules and their next fire (hover a time for the schedule's zone)",
        ("Schedule", "When", "Next fire", "Destinations", "State", "Actions"), rows,
        "No schedule yet: add one with `backupremote schedule add`.")], csrf, flash,
        "schedules")


def progressOf(job: Job, live: LiveProgress | None) -> Tag:
    stage = live.stage if live is not None else (job.nextStep or job.state)
    percent = live.percent if live is not None else None
    bar = tags.progress(max="100", id=f"progress-{job.runId}",
                        **{"aria-label": f"progress of run {job.runId}"})
    if percent is not None:
        bar.attributes["value"] = str(percent)
    done = size(live.bytesDone) if live is not None and live.bytesDone else ""
    return tags.div(class_="progress", **{"data-progress": job.runId})(
        tags.span(stage, class_="stage"), " ", bar, " ",
        tags.span(f"{percent}%" if percent is not None else "", class_="percent"),
        " ", tags.span(done, class_="bytes"))


def runsPage(active: list[tuple[Job, LiveProgress | None]], history: list[Job],
             names: dict[str, str], csrf: str, flash: tuple[str, bool] | None) -> Tag:
    activeRows = []
    for job, live in active:
        cells = [tags.th(tags.a(job.runId[:8], href=f"/runs/{job.runId}",
                                title=job.runId), scope="row"),
                 tags.td(names.get(job.scheduleId or "", job.scheduleId or "by hand")),
                 tags.td(stateBadge(job.state)), tags.td(progressOf(job, live))]
        action: Any = ""
        if job.state in ("pending", "running"):
            action = actionForm(f"/runs/{job.runId}/cancel", csrf, "Cancel", "danger")
        activeRows.append(tags.tr(**{"data-run-id": job.runId})(*cells, tags.td(action)))
    historyRows = [tags.tr(**{"data-run-id": job.runId})(
        tags.th(tags.a(job.runId[:8], href=f"/runs/{job.runId}", title=job.runId),
                scope="row"),
        tags.td(names.get(job.scheduleId or "", job.scheduleId or "by hand")),
        tags.td(instant(job.createdAt)), tags.td(stateBadge(job.state)),
        tags.td(size(job.artifact.sizeBytes) if job.artifact else "—"),
        tags.td(str(len(job.receipts))),
        tags.td(job.errorMessage or ""))
        for job in history]
    return layout("Runs", "/runs", [
        tags.section(**{"aria-labelledby": "active-h"})(
            tags.h2("Active", id="active-h"),
            table("Runs being made, downloaded or delivered",
                  ("Run", "Schedule", "State", "Progress", ""), activeRows,
                  "No run is active.", id="active")),
        tags.section(**{"aria-labelledby": "history-h"})(
            tags.h2("History", id="history-h"),
            table("The last runs that ended", ("Run", "Schedule", "Started", "State", "Size",
                                               "Copies", "Why"), historyRows,
                  "No run has ended yet.", id="history"))], csrf, flash, "runs")


def runPage(job: Job, steps: list[tuple[str, datetime, str | None]], scheduleName: str | None,
            live: LiveProgress | None, csrf: str, flash: tuple[str, bool] | None) -> Tag:
    facts = tags.dl(class_="facts")(
        tags.dt("Run"), tags.dd(tags.code(job.runId)),
        tags.dt("Schedule"), tags.dd(scheduleName or job.scheduleId or "started by hand"),
        tags.dt("Server"), tags.dd(job.server),
        tags.dt("State"), tags.dd(stateBadge(job.state), id="run-state"),
        tags.dt("Recorded"), tags.dd(instant(job.createdAt)))
    if job.errorCode:
        facts(tags.dt("Why"), tags.dd(f"{job.failedStep}: {job.errorCode}: {job.errorMessage}"),
              tags.dt("What to do"), tags.dd(lookup(job.errorCode).action))
    body: list[Any] = [facts]
    if not job.finished:
        body.append(tags.section(**{"aria-labelledby": "live-h", "data-run-id": job.runId})(
            tags.h2("Progress", id="live-h"), progressOf(job, live)))
        if job.state in ("pending", "running"):
            body.append(actionForm(f"/runs/{job.runId}/cancel", csrf, "Cancel", "danger"))
    body.append(receiptChain(job))
    body.append(tags.section(**{"aria-labelledby": "steps-h"})(
        tags.h2("Steps", id="steps-h"),
        tags.ol(class_="steps")([tags.li(stateBadge(state), " ", instant(at), " ",
                                         detail or "") for state, at, detail in steps])))
    return layout(f"Run {job.runId[:8]}", "/runs", body, csrf, flash, "runs")


def receiptChain(job: Job) -> Tag:
    """Server hash -> downloaded -> each destination: the copies and what they were checked to be."""
    server = job.status.artifact if job.status is not None else None
    links = []
    serverHash = server.digest if server is not None and server.checksum == "sha256" else (
        job.artifact.sha256 if job.artifact else None)
    links.append(tags.li(tags.strong("Server"), " made and verified ",
                         tags.span(server.name if server else "—"), " ",
                         size(server.sizeBytes if server else None), tags.br(),
                         "sha256 ", tags.code(serverHash or "—", class_="hash")))
    if job.artifact is not None and job.artifactPath is not None:
        same = serverHash == job.artifact.sha256
        links.append(tags.li(tags.strong("Downloaded"), " and checked chunk by chunk and whole",
                             tags.br(), "sha256 ", tags.code(job.artifact.sha256, class_="hash"),
                             " ", tags.span("matches" if same else "DIFFERS",
                                            class_="badge good" if same else "badge bad")))
    for receipt in job.receipts:
        same = receipt.sha256 == (job.artifact.sha256 if job.artifact else None)
        links.append(tags.li(class_="receipt")(
            tags.strong(receipt.destination), " ", receipt.name, " ", size(receipt.size),
            " (", receipt.method, ", ", instant(receipt.verifiedAt), ")", tags.br(),
            "sha256 ", tags.code(receipt.sha256, class_="hash"), " ",
            tags.span("matches" if same else "DIFFERS",
                      class_="badge good" if same else "badge bad")))
    if not job.receipts and job.state in ("delivered", "released"):
        links.append(tags.li("No destination: the download was the last copy made."))
    return tags.section(**{"aria-labelledby": "receipts-h"})(
        tags.h2("Receipts", id="receipts-h"), tags.ol(class_="chain", id="receipts")(links))


def queuePage(items: list[QueueItem], csrf: str, flash: tuple[str, bool] | None) -> Tag:
    rows = []
    for item in items:
        rows.append(tags.tr(**{"data-run-id": item.runId})(
            tags.th(tags.a(item.runId[:8], href=f"/runs/{item.runId}", title=item.runId),
                    scope="row"),
            tags.td(item.destination), tags.td(stateBadge(item.state)),
            tags.td(item.reason or ""), tags.td(instant(item.nextAttemptAt)),
            tags.td(actionForm(f"/queue/{item.id}/retry", csrf, "Retry")
                    if item.retryable else "")))
    return layout("Queue", "/queue", [table(
        "Downloads and deliveries: in flight, waiting to retry, failed",
        ("Run", "Destination", "State", "Why", "Next attempt", ""), rows,
        "Nothing is being transferred, and nothing failed.", id="queue")], csrf, flash,
        "runs")


def errorPage(title: str, message: str, csrf: str | None) -> Tag:
    return layout(title, "", [tags.p(message)], csrf)
