"""
client.toml's C{[notify]}, C{[notify.email]} and C{[notify.webhook]},
read strictly (docs/configuration.md), and the notifier they describe.

Secrets (the SMTP password, the webhook's key) are files that must give
group and others no permission; they are read when the notifier is built
(the daemon's start), never at parse time, and never logged.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from attrs import field, frozen
from twisted.python.filepath import FilePath

from backupremote.client.notify.defaults import (
    DIGEST_AFTER,
    KINDS,
    LICENSE_DAYS,
    RECOVERY_AFTER,
    UNREACHABLE_AFTER,
)
from backupremote.client.notify.rules import Rules
from backupremote.client.notify.retry import SMTP_TIMEOUT, WEBHOOK_TIMEOUT
from backupremote.configfile import Section, configError
from backupremote.private import refuseShared
from backupremote.reactors import IConnectingReactor
from backupremote.tls.client import pinList

if TYPE_CHECKING:
    from backupremote.client.destinations.httptls import PeerVerification
    from backupremote.client.notify.notifier import Notifier

# The channels (twisted.mail, treq) are imported when a notifier is made:
# every CLI command parses client.toml, none of them sends a notification.

_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[A-Za-z0-9.-]+")


@frozen
class EmailSettings:
    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    user: str | None = None
    passwordFile: FilePath | None = None
    caFile: FilePath | None = None
    fingerprints: tuple[str, ...] = ()
    timeout: float = SMTP_TIMEOUT
    rules: Rules = field(factory=Rules)

    def readPassword(self) -> str | None:
        if self.passwordFile is None:
            return None
        return _readPrivate(self.passwordFile, "notify.email.password_file")


@frozen
class WebhookSettings:
    url: str
    secretFile: FilePath
    caFile: FilePath | None = None
    fingerprints: tuple[str, ...] = ()
    timeout: float = WEBHOOK_TIMEOUT
    rules: Rules = field(factory=Rules)

    def readSecret(self) -> bytes:
        return _readPrivate(self.secretFile, "notify.webhook.secret_file").encode("utf-8")


@frozen
class NotifyConfig:
    """Who is told what; no channel (the default) tells nobody."""

    email: EmailSettings | None = None
    webhook: WebhookSettings | None = None
    licenseDays: tuple[int, ...] = LICENSE_DAYS
    unreachableAfter: float = UNREACHABLE_AFTER
    recoveryAfter: float = RECOVERY_AFTER
    digestAfter: float = DIGEST_AFTER

    def notifier(self, reactor: IConnectingReactor) -> Notifier:
        """
        The notifier with a channel per configured table; reads the secret
        files (C{CONFIG_INVALID} if one is unreadable, empty or shared).
        """
        # imported here: every CLI command reads client.toml; only the daemon notifies
        from backupremote.client.notify.notifier import Notifier, Route
        from backupremote.client.notify.smtp import EmailChannel
        from backupremote.client.notify.webhook import WebhookChannel

        routes = []
        if self.email is not None:
            e = self.email
            password = e.readPassword()
            routes.append(Route(EmailChannel(
                reactor, e.host, e.port, e.sender, e.recipients, starttls=e.starttls,
                user=e.user, password=password,
                verification=_verification(e.caFile, e.fingerprints), timeout=e.timeout),
                e.rules))
        if self.webhook is not None:
            w = self.webhook
            routes.append(Route(WebhookChannel(
                reactor, w.url, w.readSecret(),
                verification=_verification(w.caFile, w.fingerprints), timeout=w.timeout),
                w.rules))
        return Notifier(reactor, routes, unreachableAfter=self.unreachableAfter,
                        recoveryAfter=self.recoveryAfter, digestAfter=self.digestAfter)


def _verification(caFile: FilePath | None, fingerprints: tuple[str, ...]) -> PeerVerification:
    from backupremote.client.destinations.httptls import PeerVerification

    caPem = None
    if caFile is not None:
        try:
            caPem = caFile.getContent()
        except OSError as e:
            raise configError(f"cannot read the CA file {caFile.path}: {e.strerror}") from None
    return PeerVerification(caPem, fingerprints)


def _readPrivate(path: FilePath, key: str) -> str:
    refuseShared(path, f"{key} file")
    try:
        value = path.getContent().decode("utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise configError(f"cannot read {key} {path.path}") from None
    if not value:
        raise configError(f"{key} {path.path} is empty")
    return value


def parseNotify(raw: Any, base: FilePath) -> NotifyConfig:
    """C{[notify]} and its tables; C{CONFIG_INVALID} naming the key for anything wrong."""
    if raw is None:
        return NotifyConfig()
    if not isinstance(raw, dict):
        raise configError("[notify] must be a table")
    tables = {name: raw[name] for name in ("email", "webhook") if name in raw}
    top = Section({"notify": {k: v for k, v in raw.items() if k not in tables}},
                  "notify", base)
    days = top.integers("license_days", 1)
    if days is not None and not days:
        raise configError("notify.license_days must list at least one number of days")
    config = NotifyConfig(
        email=_email(Section({"notify.email": tables["email"]}, "notify.email", base))
        if "email" in tables else None,
        webhook=_webhook(Section({"notify.webhook": tables["webhook"]}, "notify.webhook",
                                 base))
        if "webhook" in tables else None,
        licenseDays=days if days is not None else LICENSE_DAYS,
        unreachableAfter=60 * top.number("unreachable_minutes", UNREACHABLE_AFTER / 60, 1),
        recoveryAfter=60 * top.number("recovery_minutes", RECOVERY_AFTER / 60, 0),
        digestAfter=60 * top.number("digest_minutes", DIGEST_AFTER / 60, 0),
    )
    top.done()
    return config


def _email(section: Section) -> EmailSettings:
    host = section.string("host") or _raise(section.missing("host"))
    starttls = section.boolean("starttls", True)
    port = section.integer("port", 587 if starttls else 25, 1)
    if port > 65535:
        raise configError("notify.email.port must be at most 65535")
    sender = _address(section.string("from") or _raise(section.missing("from")),
                      "notify.email.from")
    recipients = section.strings("to")
    if not recipients:
        raise configError("notify.email.to must list at least one address")
    user = section.string("user")
    passwordFile = section.path("password_file")
    if (user is None) != (passwordFile is None):
        raise configError("notify.email.user and notify.email.password_file go together")
    if user is not None and not starttls:
        raise configError("notify.email.starttls = false with a user would send the "
                          "password in clear: use STARTTLS, or a relay without a login")
    settings = EmailSettings(
        host=host, port=port, sender=sender,
        recipients=tuple(_address(a, "notify.email.to") for a in recipients),
        starttls=starttls, user=user, passwordFile=passwordFile,
        caFile=section.path("ca_file"), fingerprints=_pins(section, "notify.email"),
        timeout=section.number("timeout", SMTP_TIMEOUT, 1), rules=_rules(section, "notify.email"))
    section.done()
    if settings.caFile is not None and settings.fingerprints:
        raise configError("set notify.email.ca_file or notify.email.fingerprints, not both")
    return settings


def _webhook(section: Section) -> WebhookSettings:
    from backupremote.client.notify.webhook import checkWebhookURL

    url = checkWebhookURL(section.string("url") or _raise(section.missing("url")))
    secretFile = section.path("secret_file", required=True)
    assert secretFile is not None
    settings = WebhookSettings(
        url=url, secretFile=secretFile,
        caFile=section.path("ca_file"), fingerprints=_pins(section, "notify.webhook"),
        timeout=section.number("timeout", WEBHOOK_TIMEOUT, 1), rules=_rules(section, "notify.webhook"))
    section.done()
    if settings.caFile is not None and settings.fingerprints:
        raise configError("set notify.webhook.ca_file or notify.webhook.fingerprints, not both")
    return settings


def _rules(section: Section, name: str) -> Rules:
    on = section.strings("on")
    perSchedule = section.table("schedules") or {}
    schedules: dict[str, tuple[str, ...]] = {}
    for schedule, kinds in perSchedule.items():
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise configError(f"{name}.schedules.{schedule} must be a list of event kinds")
        schedules[schedule] = tuple(_kinds(kinds, f"{name}.schedules.{schedule}"))
    if on is None:
        return Rules(schedules=schedules)
    return Rules(on=_kinds(on, f"{name}.on"), schedules=schedules)


def _kinds(values: Any, key: str) -> tuple[str, ...]:
    unknown = [v for v in values if v not in KINDS]
    if unknown:
        raise configError(f"{key}: unknown event kind {unknown[0]!r}; choose from "
                          f"{', '.join(KINDS)}")
    return tuple(values)


def _pins(section: Section, name: str) -> tuple[str, ...]:
    given = section.strings("fingerprints")
    if given is None:
        return ()
    if not given:
        raise configError(f"{name}.fingerprints must list at least one fingerprint")
    return pinList(given)


def _address(text: str, key: str) -> str:
    if not text.isascii() or not _ADDRESS.fullmatch(text):
        raise configError(f"{key}: {text!r} is not a mail address (user@host)")
    return text


def _raise(error: Exception) -> Any:
    raise error
