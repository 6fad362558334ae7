"""
Delivery: the client's own flow from a verified artifact to its named
destinations (issue 12).

    model      a queue item's states
    policy     L{DeliveryPolicy}: retries, breaker, caps (client.toml's
               C{[delivery]})
    store      the C{deliveries} table, one transaction per step
    queue      L{DeliveryQueue}: attempts, retries with backoff and full
               jitter, a circuit breaker per destination, parallel caps
    breaker    L{CircuitBreakers} (each opening and closing is told to the
               notifier and the metrics)
    licence    C{destination.<type>} checked before every attempt (and at
               schedule creation, L{checks})
    jobdelivery  L{QueueDelivery}: the job runner's deliver step (IDelivery)
    retention  which of our copies a destination keeps (a pure function),
               and pruning by it

L{queueDeliveryIn} builds the queue of a client's data folder, as the
daemon and the CLI do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from twisted.python.filepath import FilePath

from backupremote.client.delivery.policy import DeliveryPolicy
from backupremote.reactors import IDestinationReactor

if TYPE_CHECKING:
    from backupremote.client.config import ClientConfig
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
        QueueItem,
    )
    from backupremote.client.delivery.queue import DeliveryQueue, Licenses, deliveryName
    from backupremote.client.delivery.store import DeliveryStore

#: name -> its module, imported on first use: client.toml's [delivery] is
#: read by every CLI command (L{backupremote.client.delivery.policy}), which
#: needs neither the queue nor the destinations
_EXPORTS = {
    "QueueDelivery": "backupremote.client.delivery.jobdelivery",
    "FeatureSet": "backupremote.client.delivery.licence",
    "IDestinationLicense": "backupremote.client.delivery.licence",
    "LicenseFileFeatures": "backupremote.client.delivery.licence",
    "DELIVERED": "backupremote.client.delivery.model",
    "FAILED": "backupremote.client.delivery.model",
    "PENDING": "backupremote.client.delivery.model",
    "RETRYING": "backupremote.client.delivery.model",
    "STATES": "backupremote.client.delivery.model",
    "UPLOADING": "backupremote.client.delivery.model",
    "VERIFYING": "backupremote.client.delivery.model",
    "QueueItem": "backupremote.client.delivery.model",
    "DeliveryQueue": "backupremote.client.delivery.queue",
    "Licenses": "backupremote.client.delivery.queue",
    "deliveryName": "backupremote.client.delivery.queue",
    "DeliveryStore": "backupremote.client.delivery.store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def licensesOf(config: ClientConfig, now: Callable[[], datetime]) -> Licenses:
    """
    The licence of each server of a client's configuration: that server's
    licence file (C{[servers.NAME] license_file}), read at each check. A
    server client.toml does not name has no licence (fail closed).
    """

    def license(server: str) -> IDestinationLicense:
        # read when a delivery asks (a command that delivers nothing never does)
        from backupremote.client.delivery.licence import LicenseFileFeatures, UnknownServer

        entry = config.serverEntries.get(server)
        if entry is None:
            return UnknownServer(server, tuple(config.serverEntries))
        return LicenseFileFeatures(entry.licenseFile, now)

    return license


def queueDeliveryIn(reactor: IDestinationReactor, dataDir: FilePath[Any], store: Any,
                    licenses: Licenses, policy: DeliveryPolicy = DeliveryPolicy(),
                    random: Callable[[], float] | None = None,
                    metrics: Any = None, notify: Any = None) -> QueueDelivery:
    """
    The delivery of a client's data folder: its registry and queue over its
    store (C{metrics}, C{notify}: see L{DeliveryQueue}).
    """
    from backupremote.client.delivery.jobdelivery import QueueDelivery
    from backupremote.client.delivery.queue import DeliveryQueue
    from backupremote.client.delivery.store import DeliveryStore
    from backupremote.client.destinations.registry import DestinationRegistry
    from backupremote.client.jobs.delivery import LocalFolderDelivery
    from backupremote.client.jobs import now

    registry = DestinationRegistry.inFolder(reactor, store, dataDir)
    queue = DeliveryQueue(reactor, DeliveryStore(store, now(reactor)), registry.openByName,
                          licenses, policy, random, metrics=metrics, notify=notify)
    local: Any = LocalFolderDelivery(reactor)
    return QueueDelivery(queue, local)


__all__ = [
    "DELIVERED", "FAILED", "PENDING", "RETRYING", "STATES", "UPLOADING", "VERIFYING",
    "DeliveryPolicy", "DeliveryQueue", "DeliveryStore", "FeatureSet", "IDestinationLicense",
    "LicenseFileFeatures", "Licenses", "QueueDelivery", "QueueItem", "deliveryName",
    "licensesOf", "queueDeliveryIn",
]
