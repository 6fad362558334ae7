"""Issuing a licence: what ``backupremote license issue`` signs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from backupremote.protocol.features import DEFAULT_FEATURES
from backupremote.license.token import License, signLicense


def issueLicense(
    issuerKey: Ed25519PrivateKey,
    clientId: str,
    days: int = 365,
    features: Iterable[str] = DEFAULT_FEATURES,
    licensee: str | None = None,
    now: datetime | None = None,
) -> tuple[License, str]:
    """A new licence for C{clientId}, valid from now for C{days}, and its token."""
    start = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    license = License(
        licenseId=str(uuid.uuid4()),
        licensee=licensee or clientId,
        clientId=clientId,
        features=tuple(sorted(set(features))),
        notBefore=start,
        expiresAt=start + timedelta(days=days),
    )
    return license, signLicense(license, issuerKey)
