"""
How hard the delivery queue tries and how much it does at once: the
L{DeliveryPolicy}, and C{[delivery]} of client.toml that sets it.

A leaf module (attrs and the config reader only): client.toml is read by
every CLI command, which must not import the queue to do so.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from backupremote.configfile import Section, configError


@frozen
class DeliveryPolicy:
    """
    How hard the queue tries, and how much it does at once.

    @ivar maxAttempts: attempts per item before it is C{failed}.
    @ivar first: seconds before the first retry (the ceiling of its full
        jitter); it doubles with each failure up to C{maximum}.
    @ivar breakerFailures: consecutive failures of one destination that
        open its circuit breaker: no attempt to it until C{breakerDelay}
        seconds have passed, then one probe (half-open).
    @ivar parallel: uploads in flight at once, all destinations together;
        C{parallelPerDestination}: to one destination.
    """

    maxAttempts: int = 6
    first: float = 30.0
    maximum: float = 3600.0
    breakerFailures: int = 3
    breakerDelay: float = 300.0
    parallel: int = 4
    parallelPerDestination: int = 2


def parseDelivery(data: dict[str, Any], base: Any) -> DeliveryPolicy:
    """The C{[delivery]} table of a parsed client.toml (absent: the defaults)."""
    section = Section(data, "delivery", base)
    default = DeliveryPolicy()
    policy = DeliveryPolicy(
        maxAttempts=section.integer("max_attempts", default.maxAttempts, 1),
        first=section.number("retry_first_seconds", default.first, 1),
        maximum=section.number("retry_max_seconds", default.maximum, 1),
        breakerFailures=section.integer("breaker_failures", default.breakerFailures, 1),
        breakerDelay=section.number("breaker_seconds", default.breakerDelay, 1),
        parallel=section.integer("parallel", default.parallel, 1),
        parallelPerDestination=section.integer("parallel_per_destination",
                                               default.parallelPerDestination, 1),
    )
    section.done()
    if policy.maximum < policy.first:
        raise configError("delivery.retry_max_seconds must be at least "
                          "delivery.retry_first_seconds")
    if policy.parallelPerDestination > policy.parallel:
        raise configError("delivery.parallel_per_destination must be at most "
                          "delivery.parallel")
    return policy
