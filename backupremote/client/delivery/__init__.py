"""
Delivery: the client's own flow from a verified artifact to its named
destinations (issue 12).

    model      a queue item's states and the queue's policy
    store      the C{deliveries} table, one transaction per step
    queue      L{DeliveryQueue}: attempts, retries with backoff and full
               jitter, a circuit breaker per destination, parallel caps
    breaker    L{CircuitBreakers}
    licence    C{destination.<type>} checked before every attempt (and at
               schedule creation, L{checks})
    jobdelivery  L{QueueDelivery}: the job runner's deliver step (IDelivery)
    retention  which of our copies a destination keeps (a pure function),
               and pruning by it

L{queueDeliveryIn} builds the queue of a client's data folder, as the
daemon and the CLI do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.client.delivery.jobdelivery import QueueDelivery
from backupremote.client.delivery.licence import (
    FeatureSet,
    IDestinationLicense,
    LicenseFileFeatures,
)
from backupremote.client.delivery.model import (
    DELIVERED,
    FAILED,
    PENDING,
    RETRYING,
    STATES,
    UPLOADING,
    VERIFYING,
    DeliveryPolicy,
    QueueItem,
)
from backupremote.client.delivery.queue import DeliveryQueue, Licenses, deliveryName
from backupremote.client.delivery.store import DeliveryStore
from backupremote.client.destinations.registry import DestinationRegistry
from backupremote.client.jobs.delivery import LocalFolderDelivery


def licensesOf(config: Any, now: Callable[[], Any]) -> Licenses:
    """
    The licence of each server of a client's configuration: its licence
    file, read at each check.
    """

    def license(server: str) -> IDestinationLicense:
        entries = getattr(config, "serverEntries", None)  # several servers (issue 11)
        path = entries()[server].licenseFile if callable(entries) else config.licenseFile
        return LicenseFileFeatures(path, now)

    return license


def queueDeliveryIn(reactor: Any, dataDir: FilePath, store: Any, licenses: Licenses,
                    policy: DeliveryPolicy = DeliveryPolicy(),
                    random: Callable[[], float] | None = None) -> QueueDelivery:
    """The delivery of a client's data folder: its registry and queue over its store."""
    from backupremote.client.jobs.runner import now

    registry = DestinationRegistry.inFolder(reactor, store, dataDir)
    queue = DeliveryQueue(reactor, DeliveryStore(store, now(reactor)), registry.openByName,
                          licenses, policy, random)
    return QueueDelivery(queue, LocalFolderDelivery(reactor))


__all__ = [
    "DELIVERED", "FAILED", "PENDING", "RETRYING", "STATES", "UPLOADING", "VERIFYING",
    "DeliveryPolicy", "DeliveryQueue", "DeliveryStore", "FeatureSet", "IDestinationLicense",
    "LicenseFileFeatures", "Licenses", "QueueDelivery", "QueueItem", "deliveryName",
    "licensesOf", "queueDeliveryIn",
]
