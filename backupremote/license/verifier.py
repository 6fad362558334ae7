"""
Fail-closed licence checks.

Any doubt denies: each denial raises a L{BackupRemoteError} with a
C{LICENSE_*} code, logs an event (never the token) and reports the code to
C{onDenied} so the server can count it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import NoReturn, Protocol

from attrs import field, frozen
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from twisted.logger import Logger

from backupremote.license.token import License, formatDate, parseToken
from backupremote.protocol.errors import (
    LICENSE_BAD_SIGNATURE,
    LICENSE_CLIENT_MISMATCH,
    LICENSE_EXPIRED,
    LICENSE_FEATURE_MISSING,
    LICENSE_NO_TRUSTED_KEY,
    LICENSE_NOT_YET_VALID,
    BackupRemoteError,
)

_log = Logger(namespace=__name__)


class Clock(Protocol):
    """The part of C{IReactorTime} the verifier uses."""

    def seconds(self) -> float: ...


def _signedBy(key: Ed25519PublicKey, signature: bytes, payload: bytes) -> bool:
    try:
        key.verify(signature, payload)
    except InvalidSignature:
        return False
    return True


@frozen
class LicenseVerifier:
    """
    Checks licence tokens against the trusted issuer keys and the clock.

    @ivar onDenied: called with the C{LICENSE_*} code of every denial.
    """

    trustedKeys: tuple[Ed25519PublicKey, ...] = field(converter=tuple)
    clock: Clock
    onDenied: Callable[[str], None] | None = None
    log: Logger = _log

    def verify(self, token: str, clientId: str, feature: str | None = None) -> License:
        """
        Read C{token}, check its signature, then L{check} it.

        @raise BackupRemoteError: with the C{LICENSE_*} code of the first
            failed check.
        """
        if not self.trustedKeys:
            self._deny(
                LICENSE_NO_TRUSTED_KEY,
                "the server trusts no licence issuer key; its operator must add "
                "one to trusted_issuers in server.toml",
                clientId,
            )
        try:
            license, payload, signature = parseToken(token)
        except BackupRemoteError as e:
            self._deny(e.code, e.message, clientId)
        if not any(_signedBy(k, signature, payload) for k in self.trustedKeys):
            self._deny(
                LICENSE_BAD_SIGNATURE,
                "the licence is not signed by an issuer this server trusts, or it "
                "was altered; use a licence from a trusted issuer",
                clientId,
            )
        return self.check(license, clientId, feature)

    def check(
        self, license: License, clientId: str, feature: str | None = None
    ) -> License:
        """
        Re-check an already verified licence: client id, validity window at
        the clock's current time, and C{feature} if not C{None}.
        """
        lid = license.licenseId
        if license.clientId != clientId:
            self._deny(
                LICENSE_CLIENT_MISMATCH,
                f"licence {lid!r} was issued for client {license.clientId!r}, "
                f"not {clientId!r}",
                clientId,
                lid,
            )
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        if now < license.notBefore:
            self._deny(
                LICENSE_NOT_YET_VALID,
                f"licence {lid!r} is not valid before "
                f"{formatDate(license.notBefore)}",
                clientId,
                lid,
            )
        if now >= license.expiresAt:
            self._deny(
                LICENSE_EXPIRED,
                f"licence {lid!r} expired at {formatDate(license.expiresAt)}; "
                "install a renewed licence",
                clientId,
                lid,
            )
        if feature is not None and feature not in license.features:
            self._deny(
                LICENSE_FEATURE_MISSING,
                f"licence {lid!r} does not include the feature {feature!r}",
                clientId,
                lid,
                {"feature": feature},
            )
        return license

    def _deny(
        self,
        code: str,
        message: str,
        clientId: str,
        licenseId: str | None = None,
        details: dict[str, str] | None = None,
    ) -> NoReturn:
        fields = {"licenseId": licenseId} if licenseId is not None else {}
        self.log.warn(
            "Licence denied for client {clientId!r}: {licenseCode}: {reason}",
            licenseCode=code,
            clientId=clientId,
            reason=message,
            **fields,
        )
        if self.onDenied is not None:
            self.onDenied(code)
        raise BackupRemoteError(code, message, details=details or {})
