"""
What unauthenticated peers did wrong, logged once and then summarised.

Anyone who can reach the port can make the server log: a line per bare
connection would let them fill the disk. The first refusal from an address
in a window is logged as it happens; the rest are counted by reason and
written as one summary line per address when the window ends. The table is
bounded too: past C{maxPeers} addresses in one window, the others are
counted together.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_log = Logger(namespace="backupremote.server.edge.refusals")

#: Stands for every address past the table's bound.
OTHER_PEERS = "other addresses"


class PreAuthRefusals:
    """Refused and dropped connections before ``auth``, per peer address per window."""

    def __init__(
        self, clock: IReactorTime, window: float = 60.0, maxPeers: int = 1024,
    ) -> None:
        self._clock = clock
        self.window = window
        self.maxPeers = maxPeers
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._loop = LoopingCall(self.flush)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.window, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()
        self.flush()

    def record(self, host: str, reason: str) -> None:
        """One connection of C{host} refused or dropped for C{reason}."""
        if host not in self._counts and len(self._counts) >= self.maxPeers:
            host = OTHER_PEERS
        if host not in self._counts:
            self._counts[host]  # seen this window: the next ones are summarised
            _log.warn(
                "[{peer} - -] before auth: {reason}; further refusals from this "
                "address are summarised every {window:.0f} s",
                peer=host, reason=reason, window=self.window,
            )
            return
        self._counts[host][reason] += 1

    def flush(self) -> None:
        """Write one summary line per address that had more than its first refusal."""
        counts, self._counts = self._counts, defaultdict(Counter)
        for host, reasons in counts.items():
            if not reasons:
                continue
            listed = "; ".join(f"{n} x {reason}" for reason, n in reasons.most_common())
            _log.warn(
                "[{peer} - -] before auth, in the last {window:.0f} s: {total} more "
                "refused: {listed}",
                peer=host, window=self.window, total=sum(reasons.values()),
                listed=listed, refusals=dict(reasons),
            )
