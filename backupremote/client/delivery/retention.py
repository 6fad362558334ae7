"""
Retention per destination: which of our copies a destination keeps.

L{select} is a pure function: from our delivered copies (receipts) and a
listing of the destination, the copies to delete. It only ever proposes a
file that

  - is in the listing under exactly the name a receipt of ours records,
    with that receipt's size (a file we did not write, or one rewritten
    since, is never touched), and
  - is not the newest verified copy of its schedule at that destination,
  - and that no rule keeps.

Copies are grouped by schedule (runs started by hand form their own
group). Within a group, a copy is kept if any rule keeps it (the union):
the newest C{keepLast}; those verified within C{keepDays} of C{now}; GFS,
the newest copy of each of the last D days, W ISO weeks, M months and Y
years that have a copy. A retention that sets no rule keeps everything.

L{prune} applies it to a destination: lists, selects, deletes (unless a
dry run), and marks the receipts pruned. It also proposes our temporary
files older than a day (uploads cut off by a crash).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone

from attrs import frozen

from backupremote.client.destinations.interface import IDestination, RemoteFile
from backupremote.client.destinations.stored import Retention

#: A temporary file older than this is an upload cut off by a crash.
STALE_TEMPORARY = timedelta(days=1)


@frozen
class Copy:
    """One delivered copy, as our receipt records it."""

    id: str
    name: str
    size: int
    verifiedAt: datetime
    scheduleId: str | None


@frozen
class Selection:
    """What retention keeps and deletes at one destination (copies by receipt)."""

    keep: tuple[Copy, ...]
    delete: tuple[Copy, ...]
    #: listed files that are none of our receipts (never touched)
    foreign: tuple[str, ...]
    #: our temporary files older than L{STALE_TEMPORARY}
    staleTemporary: tuple[str, ...] = ()


def _periods(copy: Copy) -> tuple[tuple[str, object], ...]:
    day = copy.verifiedAt.astimezone(timezone.utc).date()
    iso = day.isocalendar()
    return (("daily", day), ("weekly", (iso[0], iso[1])), ("monthly", (day.year, day.month)),
            ("yearly", day.year))


def _keptByGFS(copies: Sequence[Copy], gfs: tuple[int, int, int, int]) -> set[str]:
    """Ids of the newest copy of each of the last N periods of each kind (newest first)."""
    kept: set[str] = set()
    for index, count in enumerate(gfs):
        seen: list[object] = []
        for copy in copies:
            period = _periods(copy)[index][1]
            if period in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(period)
            kept.add(copy.id)
    return kept


def _keptInGroup(copies: Sequence[Copy], retention: Retention, now: datetime) -> set[str]:
    copies = sorted(copies, key=lambda c: (c.verifiedAt, c.id), reverse=True)
    if not copies:
        return set()
    if retention.keepsAll:
        return {c.id for c in copies}
    kept = {copies[0].id}  # never the newest verified copy
    if retention.keepLast is not None:
        kept |= {c.id for c in copies[:retention.keepLast]}
    if retention.keepDays is not None:
        horizon = now - timedelta(days=retention.keepDays)
        kept |= {c.id for c in copies if c.verifiedAt >= horizon}
    if retention.gfs is not None:
        kept |= _keptByGFS(copies, retention.gfs)
    return kept


def select(copies: Iterable[Copy], listing: Iterable[RemoteFile], retention: Retention,
           now: datetime) -> Selection:
    """The copies retention deletes (see the module docstring); pure."""
    listed = {f.name: f for f in listing}
    ours = [c for c in copies
            if c.name in listed and not listed[c.name].temporary
            and listed[c.name].size == c.size]
    groups: dict[str | None, list[Copy]] = {}
    for copy in ours:
        groups.setdefault(copy.scheduleId, []).append(copy)
    kept: set[str] = set()
    for group in groups.values():
        kept |= _keptInGroup(group, retention, now)
    # a name two receipts share (delivered twice) is kept if either is
    keptNames = {c.name for c in ours if c.id in kept}
    keep = tuple(c for c in ours if c.name in keptNames)
    delete = tuple(c for c in ours if c.name not in keptNames)
    receiptNames = {c.name for c in copies}
    foreign = tuple(sorted(name for name, f in listed.items()
                           if name not in receiptNames and not f.temporary))
    stale = tuple(sorted(name for name, f in listed.items() if f.temporary and (
        f.modified is not None and now - f.modified > STALE_TEMPORARY)))
    return Selection(keep, delete, foreign, stale)


async def prune(destination: IDestination, copies: Sequence[Copy], retention: Retention,
                now: datetime, dryRun: bool) -> Selection:
    """List C{destination}, select by C{retention}, and delete (unless C{dryRun})."""
    selection = select(copies, await destination.listFiles(), retention, now)
    if not dryRun:
        deleted = set()
        for copy in selection.delete:
            if copy.name not in deleted:
                await destination.delete(copy.name)
                deleted.add(copy.name)
        for name in selection.staleTemporary:
            await destination.delete(name)
    return selection
