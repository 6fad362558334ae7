"""
The words of client.toml's C{on = [...]} and what C{[notify]} means when a
key is left out: apart from the events, the notifier and the licence
watch, so that reading client.toml (every CLI command does) imports none
of them (their attrs classes and C{twisted.application}).
"""

from __future__ import annotations

#: The words of C{on = [...]}, in the order the documentation lists them.
FAILURE = "failure"
SUCCESS = "success"
MISSED = "missed"
SKIPPED = "skipped"
CIRCUIT = "circuit"
LICENSE = "license"
UNREACHABLE = "unreachable"
KINDS = (FAILURE, SUCCESS, MISSED, SKIPPED, CIRCUIT, LICENSE, UNREACHABLE)
#: What a channel is told when its C{on} is not set.
DEFAULT_KINDS = (FAILURE, MISSED)

#: Seconds a server must stay unreachable before anyone is told.
UNREACHABLE_AFTER = 15 * 60.0
#: Seconds a condition must stay cleared before its recovery is sent.
RECOVERY_AFTER = 10 * 60.0
#: Seconds after a message during which a channel's events are gathered.
DIGEST_AFTER = 5 * 60.0

#: Days before the licence's expiry at which to warn.
LICENSE_DAYS = (30, 7, 1)
