"""client.toml's [notify] tables: read strictly, secrets private, the notifier they make."""

from __future__ import annotations

import os
from typing import Any

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.config import loadClientConfig
from backupremote.client.notify import EmailChannel, Rules, WebhookChannel
from backupremote.client.notify.config import NotifyConfig
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError

BASE = """
[client]
id = "laptop"
secret_file = "client.secret"
license_file = "client.license"
[server]
address = "127.0.0.1:7443"
fingerprint = "%s"
""" % ("AB" * 32)

EMAIL = """
[notify.email]
host = "smtp.example.org"
from = "backups@example.org"
to = ["ops@example.org"]
user = "backups"
password_file = "smtp.password"
"""

WEBHOOK = """
[notify.webhook]
url = "https://hooks.example.org/backup"
secret_file = "webhook.secret"
"""

PASSWORD = "correct horse battery staple"


class NotifyConfigTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.folder = FilePath(self.mktemp())
        self.folder.makedirs()
        for name, content in (("smtp.password", PASSWORD + "\n"),
                              ("webhook.secret", "hook-secret")):
            self.folder.child(name).setContent(content.encode())
            os.chmod(self.folder.child(name).path, 0o600)

    def load(self, text: str) -> NotifyConfig:
        path = self.folder.child("client.toml")
        path.setContent((BASE + text).encode("utf-8"))
        return loadClientConfig(path).notify

    def refused(self, text: str, *needles: str) -> str:
        with self.assertRaises(BackupRemoteError) as caught:
            self.load(text)
        self.assertEqual(caught.exception.code, CONFIG_INVALID)
        for needle in needles:
            self.assertIn(needle, caught.exception.message)
        return caught.exception.message

    def test_none(self) -> None:
        config = self.load("")
        self.assertEqual(config, NotifyConfig())
        self.assertEqual(config.notifier(Clock()).routes, ())

    def test_emailDefaults(self) -> None:
        email = self.load(EMAIL).email
        assert email is not None
        self.assertEqual((email.host, email.port, email.starttls, email.sender, email.recipients),
                         ("smtp.example.org", 587, True, "backups@example.org",
                          ("ops@example.org",)))
        self.assertEqual(email.rules, Rules(on={"failure", "missed"}))
        self.assertEqual(email.passwordFile, self.folder.child("smtp.password"))
        self.assertEqual(email.readPassword(), PASSWORD)

    def test_everything(self) -> None:
        config = self.load("""
[notify]
license_days = [60, 14, 2]
unreachable_minutes = 30
recovery_minutes = 5
digest_minutes = 1
""" + EMAIL + """port = 2525
timeout = 20
on = ["failure", "license", "unreachable"]
fingerprints = ["%s"]
[notify.email.schedules]
nightly = ["success", "failure"]
""" % ("CD" * 32) + WEBHOOK + """on = ["failure", "success", "missed", "skipped", "circuit"]
ca_file = "hooks-ca.pem"
schedules = { hourly = [] }
""")
        self.assertEqual((config.licenseDays, config.unreachableAfter, config.recoveryAfter,
                          config.digestAfter), ((60, 14, 2), 1800, 300, 60))
        assert config.email is not None and config.webhook is not None
        self.assertEqual((config.email.port, config.email.timeout), (2525, 20))
        self.assertEqual(config.email.rules, Rules(
            on={"failure", "license", "unreachable"},
            schedules={"nightly": {"success", "failure"}}))
        self.assertEqual(len(config.email.fingerprints), 1)
        self.assertEqual(config.webhook.caFile, self.folder.child("hooks-ca.pem"))
        self.assertEqual(config.webhook.rules.schedules, {"hourly": frozenset()})

    def test_notifier(self) -> None:
        notifier = self.load(EMAIL + WEBHOOK).notifier(Clock())
        channels = [route.channel for route in notifier.routes]
        self.assertEqual([type(c) for c in channels], [EmailChannel, WebhookChannel])
        self.assertEqual(notifier.unreachableAfter, 900)

    def test_unknownKeys(self) -> None:
        self.refused(EMAIL + 'tls = "implicit"\n', "notify.email.tls")
        self.refused(WEBHOOK + "method = \"PUT\"\n", "notify.webhook.method")
        self.refused("[notify]\nquiet = true\n", "notify.quiet")
        self.refused("[notify.slack]\nurl = \"x\"\n", "notify.slack")
        self.refused("[notifications]\n", "notifications")

    def test_unknownKind(self) -> None:
        self.refused(EMAIL + 'on = ["failures"]\n', "notify.email.on", "'failures'",
                     "failure, success, missed, skipped, circuit, license, unreachable")
        self.refused(EMAIL + '[notify.email.schedules]\nnightly = ["sucess"]\n',
                     "notify.email.schedules.nightly")
        self.refused(EMAIL + '[notify.email.schedules]\nnightly = "failure"\n',
                     "notify.email.schedules.nightly")

    def test_required(self) -> None:
        self.refused('[notify.email]\nfrom = "a@b.c"\nto = ["d@e.f"]\n', "notify.email.host")
        self.refused('[notify.email]\nhost = "h"\nto = ["d@e.f"]\n', "notify.email.from")
        self.refused('[notify.email]\nhost = "h"\nfrom = "a@b.c"\n', "notify.email.to")
        self.refused('[notify.email]\nhost = "h"\nfrom = "a@b.c"\nto = []\n',
                     "notify.email.to")
        self.refused('[notify.webhook]\nsecret_file = "s"\n', "notify.webhook.url")
        self.refused('[notify.webhook]\nurl = "https://h/"\n', "notify.webhook.secret_file")

    def test_loginRules(self) -> None:
        self.refused('[notify.email]\nhost = "h"\nfrom = "a@b.c"\nto = ["d@e.f"]\nuser = "u"\n',
                     "notify.email.user and notify.email.password_file go together")
        self.refused(EMAIL + "starttls = false\n", "password in clear")

    def test_relayWithoutTLS(self) -> None:
        email = self.load('[notify.email]\nhost = "localhost"\nfrom = "a@b.c"\n'
                          'to = ["d@e.f"]\nstarttls = false\n').email
        assert email is not None
        self.assertEqual((email.port, email.starttls, email.user), (25, False, None))

    def test_badValues(self) -> None:
        self.refused(EMAIL.replace("ops@example.org", "ops"), "notify.email.to", "'ops'")
        self.refused(EMAIL.replace('"backups@example.org"', '"Backups <b@example.org>"'),
                     "notify.email.from")
        self.refused(EMAIL + "port = 70000\n", "notify.email.port")
        self.refused(EMAIL + "timeout = 0\n", "notify.email.timeout")
        self.refused(EMAIL + 'starttls = "yes"\n', "notify.email.starttls")
        self.refused(EMAIL + 'fingerprints = ["nope"]\n')
        self.refused(EMAIL + 'fingerprints = ["%s"]\nca_file = "ca.pem"\n' % ("AB" * 32),
                     "not both")
        self.refused(WEBHOOK.replace("https://", "http://"), "notify.webhook.url", "https://")
        self.refused("[notify]\nlicense_days = []\n", "notify.license_days")
        self.refused("[notify]\nlicense_days = [30, 0]\n", "notify.license_days")
        self.refused("[notify]\nunreachable_minutes = 0\n", "notify.unreachable_minutes")

    def assertSecretRefused(self, config: NotifyConfig, name: str, *needles: str) -> None:
        with self.assertRaises(BackupRemoteError) as caught:
            config.notifier(Clock())
        self.assertEqual(caught.exception.code, CONFIG_INVALID)
        for needle in needles:
            self.assertIn(needle, caught.exception.message)
        self.assertNotIn(PASSWORD, caught.exception.message)
        self.assertNotIn("hook-secret", caught.exception.message)

    def test_sharedSecretsRefused(self) -> None:
        """A password or webhook key that group or others may read is refused at start."""
        for name, table in (("smtp.password", EMAIL), ("webhook.secret", WEBHOOK)):
            path = self.folder.child(name)
            os.chmod(path.path, 0o640)
            self.assertSecretRefused(self.load(table), name, path.path, "chmod 600")
            os.chmod(path.path, 0o600)
            self.load(table).notifier(Clock())

    def test_emptyOrMissingSecret(self) -> None:
        self.folder.child("smtp.password").setContent(b"\n")
        os.chmod(self.folder.child("smtp.password").path, 0o600)
        self.assertSecretRefused(self.load(EMAIL), "smtp.password", "is empty")
        self.folder.child("webhook.secret").remove()
        self.assertSecretRefused(self.load(WEBHOOK), "webhook.secret", "cannot read")

    def test_channelsKeepTheirSecret(self) -> None:
        """The channels built hold the secrets, but show them nowhere."""
        notifier = self.load(EMAIL + WEBHOOK).notifier(Clock())
        for route in notifier.routes:
            shown: list[Any] = [repr(route.channel), str(vars(route.channel).keys())]
            for text in shown:
                self.assertNotIn(PASSWORD, text)
                self.assertNotIn("hook-secret", text)


class NoCommandLineTests(SynchronousTestCase):
    def test_noChildProcess(self) -> None:
        """Notifications run no program: no secret can reach a command line."""
        package = FilePath(__file__).parent().parent().parent().parent().child(
            "backupremote").child("client").child("notify")
        sources = package.globChildren("*.py")
        self.assertGreater(len(sources), 5)
        for source in sources:
            text = source.getContent().decode("utf-8")
            for call in ("spawnProcess", "subprocess", "os.system", "os.exec", "Popen"):
                self.assertNotIn(call, text, source.basename())
