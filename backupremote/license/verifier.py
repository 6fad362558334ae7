"""
Fail-closed licence checks.

Any doubt denies: each denial raises a L{BackupRemoteError} with a
C{LICENSE_*} code, logs an event (never the token) and reports the code to
C{onDenied} so the server can count it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Mapping, NoReturn, Protocol

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
_NO_CONTEXT: Mapping[str, str] = {}


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

    def verify(
        self, token: str, clientId: str, feature: str | None = None,
        context: Mapping[str, str] = _NO_CONTEXT,
    ) -> License:
        """
        Read C{token}, check its signature, then L{check} it.

        @param context: log fields of the request (C{requestId}, C{peer}),
            added to the log line of a denial.
        @raise BackupRemoteError: with the C{LICENSE_*} code of the first
            failed check.
        """
        if not self.trustedKeys:
            self._deny(
                LICENSE_NO_TRUSTED_KEY,
                "the server trusts no licence issuer key; its operator must add "
                "one to trusted_issuers in server.toml",
                clientId,
                context=context,
            )
        try:
            license, payload, signature = parseToken(token)
        except BackupRemoteError as e:
            self._deny(e.code, e.message, clientId, context=context)
        if not any(_signedBy(k, signature, payload) for k in self.trustedKeys):
            self._deny(
                LICENSE_BAD_SIGNATURE,
                "the licence is not signed by an issuer this server trusts, or it "
                "was altered; use a licence from a trusted issuer",
                clientId,
                context=context,
            )
        return self.check(license, clientId, feature, context)

    def check(
        self, license: License, clientId: str, feature: str | None = None,
        context: Mapping[str, str] = _NO_CONTEXT,
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
                context=context,
            )
        now = datetime.fromtimestamp(self.clock.seconds(), timezone.utc)
        if now < license.notBefore:
            self._deny(
                LICENSE_NOT_YET_VALID,
                f"licence {lid!r} is not valid before "
                f"{formatDate(license.notBefore)}",
                clientId,
                lid,
                context=context,
            )
        if now >= license.expiresAt:
            self._deny(
                LICENSE_EXPIRED,
                f"licence {lid!r} expired at {formatDate(license.expiresAt)}; "
                "install a renewed licence",
                clientId,
                lid,
                context=context,
            )
        if feature is not None and feature not in license.features:
            self._deny(
                LICENSE_FEATURE_MISSING,
                f"licence {lid!r} does not include the feature {feature!r}",
                clientId,
                lid,
                {"feature": feature},
                context=context,
            )
        return license

    def _deny(
        self,
        code: str,
        message: str,
        clientId: str,
        licenseId: str | None = None,
        details: dict[str, str] | None = None,
        context: Mapping[str, str] = _NO_CONTEXT,
    ) -> NoReturn:
        fields: dict[str, Any] = {
            **context, "licenseCode": code, "clientId": clientId, "reason": message,
        }
        if licenseId is not None:
            fields["licenseId"] = licenseId
        prefix = "[{peer} {clientId} {requestId}] " if context else ""
        self.log.warn(
            prefix + "Licence denied for client {clientId!r}: {licenseCode}: {reason}",
            **fields,
        )
        if self.onDenied is not None:
            self.onDenied(code)
        raise BackupRemoteError(code, message, details=details or {})
