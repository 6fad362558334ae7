"""
``backupremote queue``: what the client is downloading and delivering, what
waits to retry and why, what failed and why; ``queue retry ID``.

Items (JSON): C{id}, C{runId}, C{destination}, C{state} (C{downloading},
or a delivery's C{pending}, C{uploading}, C{verifying}, C{delivered},
C{retrying}, C{failed}), C{reason}, C{nextAttemptAt}. A download's id is
its run's id and its destination C{null}.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from backupremote.cli.clientconfig import commandConfig
from backupremote.cli.jobs import withJobs
from backupremote.cli.output import Output, whatToDo
from backupremote.client.delivery.model import DELIVERED, FAILED, QueueItem
from backupremote.client.delivery.store import DeliveryStore
from backupremote.client.jobs import FAILED as JOB_FAILED
from backupremote.client.jobs import JobRequest, JobStore
from backupremote.client.jobs.runner import now
from backupremote.client.store import SQLiteClientStore

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorCore
    from backupremote.reactors import IStoreReactor

#: job states whose next step is this client's transfer of the artifact
_DOWNLOADING = ("completed", "downloaded")


def register(commands: Any) -> None:
    queue = commands.add_parser(
        "queue", help="downloads and deliveries: in flight, waiting to retry (why), failed "
        "(why)", epilog="example: backupremote --config client.toml queue --json")
    queue.add_argument("--all", action="store_true", help="also list delivered items")
    queue.set_defaults(onReactor=listCommand)
    sub = queue.add_subparsers(dest="action")
    retry = sub.add_parser(
        "retry", help="try a delivery again now (its attempts counted anew), and drive its "
        "run on to delivered and released", epilog="example: backupremote queue retry 1f0c2a9e")
    retry.add_argument("id", help="the delivery's id (or its first 8 characters or more)")
    retry.set_defaults(onReactor=withJobs(retryCommand))


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def itemJSON(item: QueueItem) -> dict[str, Any]:
    return {"id": item.id, "runId": item.runId, "destination": item.destination,
            "state": item.state, "reason": item.reason,
            "nextAttemptAt": _iso(item.nextAttemptAt), "name": item.name,
            "attempts": item.attempts, "errorCode": item.errorCode,
            "verifiedAt": _iso(item.verifiedAt)}


async def listCommand(reactor: IStoreReactor, args: argparse.Namespace, output: Output) -> int:
    config = commandConfig(args)
    assert config.dataDir is not None
    store = SQLiteClientStore.inFolder(config.dataDir, reactor)
    try:
        await store.opened()
        jobs = await JobStore(store, now(reactor)).unfinished()
        items = await DeliveryStore(store, now(reactor)).list()
    finally:
        await store.close()
    rows: list[dict[str, Any]] = [
        {"id": job.runId, "runId": job.runId, "destination": None, "state": "downloading",
         "reason": None, "nextAttemptAt": None}
        for job in jobs if job.state in _DOWNLOADING]
    shown = [i for i in items if args.all or i.state != DELIVERED]
    rows += [itemJSON(item) for item in shown]
    lines = []
    for row in rows:
        where = row["destination"] or "(download)"
        line = f"{row['id'][:8]}  {row['state']:<11} {where:<16} run {row['runId']}"
        if row["state"] == "retrying":
            line += f"  next attempt {row['nextAttemptAt']}"
        if row["reason"]:
            line += f"\n          why: {row['reason']}" + whatToDo(row.get("errorCode"),
                                                                " " * 10)
        lines.append(line)
    failed = [r for r in rows if r["state"] == FAILED]
    if failed:
        lines.append(f"retry a failed one: backupremote queue retry {failed[0]['id'][:8]}")
    output.result(rows, "\n".join(lines) or "the queue is empty")
    return 0


async def retryCommand(client: Any, runner: Any, args: argparse.Namespace,
                       output: Output, reactor: IReactorCore) -> int:
    deliveries = DeliveryStore(runner.jobs.store, lambda: datetime.now(timezone.utc))
    item = await deliveries.retry(args.id)
    job = await runner.jobs.get(item.runId)
    if job is not None and job.state == JOB_FAILED and job.failedStep == "deliver":
        # the run failed at its delivery: started again, it delivers (this item
        # and any other not delivered yet) and releases its staging
        if not output.asJSON:
            output.note(f"delivering run {job.runId} again")
        job = await runner.start(JobRequest(runId=job.runId, server=job.server, goal=job.goal))
    fresh = await deliveries.get(item.id)
    output.result(itemJSON(fresh), f"{fresh.id[:8]} {fresh.state} to {fresh.destination}"
                  + (f": {fresh.reason}" if fresh.reason and fresh.state != DELIVERED else "")
                  + (f"\nrun {job.runId}: {job.state}" if job is not None else ""))
    return 0 if fresh.state != FAILED else 6
