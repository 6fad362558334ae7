"""
Licences per destination type: feature C{destination.<type>}.

The delivery queue asks an L{IDestinationLicense} before every attempt (a
licence can be withdrawn or expire between two), and C{schedule add} /
C{schedule update} before storing a schedule
(L{backupremote.client.delivery.checks.checkScheduleDestinations}). Any
doubt refuses (fail closed), with a C{LICENSE_*} code.

L{LicenseFileFeatures} reads the client's licence file (C{license_file} of
client.toml) at each check, without its signature: the server checks
that, at every login and gated command; this check is the client's own
refusal to deliver where its licence does not reach.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from twisted.python.filepath import FilePath
from zope.interface import Interface, implementer

from backupremote.license.token import parseToken
from backupremote.protocol.errors import (
    CONFIG_INVALID,
    LICENSE_EXPIRED,
    LICENSE_FEATURE_MISSING,
    LICENSE_MALFORMED,
    LICENSE_NOT_YET_VALID,
    BackupRemoteError,
)
from backupremote.protocol.features import destinationFeature


class IDestinationLicense(Interface):
    def check(destinationType: str) -> None:
        """
        Return if the licence allows delivering to C{destinationType}, else
        raise a L{BackupRemoteError} with a C{LICENSE_*} code.
        """


def missing(destinationType: str) -> BackupRemoteError:
    feature = destinationFeature(destinationType)
    return BackupRemoteError(LICENSE_FEATURE_MISSING, (
        f"the licence does not include {feature}: this client may not deliver to "
        f"{destinationType} destinations"), details={"feature": feature})


@implementer(IDestinationLicense)
class LicenseFileFeatures:
    """The features of the licence in C{licenseFile}, read at each check."""

    def __init__(self, licenseFile: FilePath, now: Callable[[], datetime]) -> None:
        self.licenseFile = licenseFile
        self._now = now

    def check(self, destinationType: str) -> None:
        try:
            token = self.licenseFile.getContent().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            raise BackupRemoteError(LICENSE_MALFORMED, (
                f"cannot read the licence file {self.licenseFile.path}")) from None
        license, _, _ = parseToken(token)
        now = self._now()
        if now < license.notBefore:
            raise BackupRemoteError(LICENSE_NOT_YET_VALID, (
                f"the licence is valid from {license.notBefore.isoformat()} only"))
        if now >= license.expiresAt:
            raise BackupRemoteError(LICENSE_EXPIRED, (
                f"the licence expired at {license.expiresAt.isoformat()}"))
        if destinationFeature(destinationType) not in license.features:
            raise missing(destinationType)


@implementer(IDestinationLicense)
class UnknownServer:
    """
    The licence of a server client.toml does not name (a schedule kept from
    a server since removed): none, so nothing is delivered for it.
    """

    def __init__(self, server: str, known: tuple[str, ...]) -> None:
        self.server = server
        self.known = known

    def check(self, destinationType: str) -> None:
        raise BackupRemoteError(CONFIG_INVALID, (
            f"client.toml has no server {self.server!r} (it has "
            f"{', '.join(sorted(self.known)) or 'none'}), so there is no licence to "
            f"deliver its runs with: add [servers.{self.server}] back, or point the "
            f"schedule at another server (backupremote schedule update NAME --server S)"),
            details={"server": self.server})


@implementer(IDestinationLicense)
class FeatureSet:
    """A fixed (and changeable) set of features: tests, and embedders without a file."""

    def __init__(self, features: set[str] | frozenset[str]) -> None:
        self.features = set(features)

    def check(self, destinationType: str) -> None:
        if destinationFeature(destinationType) not in self.features:
            raise missing(destinationType)
