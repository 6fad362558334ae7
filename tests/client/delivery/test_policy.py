"""client.toml's C{[delivery]}: the delivery queue's policy, read strictly."""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.client.config import loadClientConfig
from backupremote.client.delivery.policy import DeliveryPolicy
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError
from tests.client.test_config import MINIMAL


class DeliverySectionTests(SynchronousTestCase):
    def load(self, text: str) -> DeliveryPolicy:
        folder = FilePath(self.mktemp())
        folder.makedirs()
        path = folder.child("client.toml")
        path.setContent(text.encode("utf-8"))
        return loadClientConfig(path).delivery

    def refused(self, text: str, *mentions: str) -> None:
        error = self.assertRaises(BackupRemoteError, self.load, MINIMAL + text)
        self.assertEqual(error.code, CONFIG_INVALID)
        for mention in mentions:
            self.assertIn(mention, error.message)

    def test_absentIsTheDefaults(self) -> None:
        self.assertEqual(self.load(MINIMAL), DeliveryPolicy())

    def test_everyKey(self) -> None:
        policy = self.load(MINIMAL + """
[delivery]
max_attempts = 3
retry_first_seconds = 5
retry_max_seconds = 600.5
breaker_failures = 2
breaker_seconds = 120
parallel = 8
parallel_per_destination = 1
""")
        self.assertEqual(policy, DeliveryPolicy(
            maxAttempts=3, first=5, maximum=600.5, breakerFailures=2, breakerDelay=120,
            parallel=8, parallelPerDestination=1))

    def test_unknownKeyIsNamed(self) -> None:
        self.refused("[delivery]\nretries = 3\n", "delivery.retries")
        self.refused("[delivery]\nmax_attempts = 3\nbreaker_delay = 1\n",
                     "delivery.breaker_delay")

    def test_wrongValues(self) -> None:
        self.refused("[delivery]\nmax_attempts = 0\n", "delivery.max_attempts")
        self.refused('[delivery]\nmax_attempts = "3"\n', "delivery.max_attempts")
        self.refused("[delivery]\nparallel = true\n", "delivery.parallel")
        self.refused("[delivery]\nretry_first_seconds = 0\n", "delivery.retry_first_seconds")
        self.refused("[delivery]\nretry_first_seconds = 100\nretry_max_seconds = 10\n",
                     "delivery.retry_max_seconds", "delivery.retry_first_seconds")
        self.refused("[delivery]\nparallel = 2\nparallel_per_destination = 3\n",
                     "delivery.parallel_per_destination")
        error = self.assertRaises(BackupRemoteError, self.load, "delivery = 3\n" + MINIMAL)
        self.assertIn("[delivery] must be a table", error.message)

    def test_theCliNeedsNoQueueToReadIt(self) -> None:
        """Reading client.toml imports the policy, not the queue (the CLI starts fast)."""
        import subprocess
        import sys

        code = ("import sys, backupremote.client.config; "
                "print('backupremote.client.delivery.queue' in sys.modules)")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=FilePath(__file__).parent().parent().parent().parent().path)
        self.assertEqual(done.stdout.strip(), "False", done.stderr)
