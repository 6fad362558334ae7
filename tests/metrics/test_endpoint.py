"""The /metrics endpoint: served on an endpoint string, behind basic auth when configured."""

from __future__ import annotations

import base64

import treq
from prometheus_client import CollectorRegistry, Counter
from twisted.internet import reactor
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from backupremote.metrics import MetricsConfig, MetricsService, parseMetrics
from backupremote.protocol.errors import CONFIG_INVALID, BackupRemoteError


class ConfigTests(SynchronousTestCase):
    def test_offByDefault(self) -> None:
        self.assertFalse(parseMetrics({}, FilePath(".")).enabled)

    def test_listenAndAuth(self) -> None:
        config = parseMetrics({"metrics": {"listen": "tcp:9464:interface=127.0.0.1",
                                           "username": "prom", "password_file": "pw"}},
                              FilePath("/etc/br"))
        self.assertEqual(config.listen, "tcp:9464:interface=127.0.0.1")
        self.assertEqual(config.passwordFile, FilePath("/etc/br/pw"))

    def test_refused(self) -> None:
        for table in ({"listen": "http://x"}, {"listen": "tcp:1", "username": "u"},
                      {"listen": "tcp:1", "typo": 1}):
            with self.assertRaises(BackupRemoteError) as caught:
                parseMetrics({"metrics": table}, FilePath("."))
            self.assertEqual(caught.exception.code, CONFIG_INVALID)


class EndpointTests(TestCase):
    async def serve(self, **auth: object) -> tuple[int, CollectorRegistry]:
        registry = CollectorRegistry()
        Counter("backupremote_things", "Things.", registry=registry).inc(3)
        service = MetricsService(reactor, MetricsConfig("tcp:0:interface=127.0.0.1", **auth),
                                 registry)
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.whenListening()
        return port.getHost().port, registry

    async def get(self, port: int, **headers: str) -> tuple[int, str]:
        response = await treq.get(f"http://127.0.0.1:{port}/metrics", headers=headers,
                                  persistent=False, timeout=10)
        return response.code, await response.text("utf-8")

    async def test_serves(self) -> None:
        port, _ = await self.serve()
        code, text = await self.get(port)
        self.assertEqual(code, 200)
        self.assertIn("backupremote_things_total 3.0", text)

    async def test_basicAuth(self) -> None:
        secret = FilePath(self.mktemp())
        secret.setContent(b"s3cret\n")
        secret.chmod(0o600)
        port, _ = await self.serve(username="prom", passwordFile=secret)
        code, _ = await self.get(port)
        self.assertEqual(code, 401)
        wrong = base64.b64encode(b"prom:nope").decode()
        code, _ = await self.get(port, Authorization=f"Basic {wrong}")
        self.assertEqual(code, 401)
        right = base64.b64encode(b"prom:s3cret").decode()
        code, text = await self.get(port, Authorization=f"Basic {right}")
        self.assertEqual(code, 200)
        self.assertIn("backupremote_things_total", text)


class DaemonWiringTests(SynchronousTestCase):
    """The client daemon serves its metrics under the service named metrics, when asked."""

    def config(self, **changes: object) -> object:
        from backupremote.client.config import ClientConfig, ServerAddress

        folder = FilePath(self.mktemp())
        folder.makedirs()
        secret = folder.child("secret")
        secret.setContent(b"x")
        secret.chmod(0o600)
        folder.child("license").setContent(b"token")
        return ClientConfig(clientId="laptop", secretFile=secret,
                            licenseFile=folder.child("license"),
                            server=ServerAddress("127.0.0.1", 1), fingerprints=("AA" * 32,),
                            dataDir=folder.child("data"), **changes)  # type: ignore[arg-type]

    def test_offByDefault(self) -> None:
        from backupremote.client.service import makeService

        top = makeService(self.config(), reactor)  # type: ignore[arg-type]
        self.assertNotIn("metrics", [s.name for s in top])  # type: ignore[attr-defined]

    def test_metricsService(self) -> None:
        from backupremote.client.service import makeService

        top = makeService(self.config(metrics=MetricsConfig("tcp:0:interface=127.0.0.1")),
                          reactor)  # type: ignore[arg-type]
        service = top.getServiceNamed("metrics")  # type: ignore[attr-defined]
        self.assertIsInstance(service, MetricsService)
        jobs = top.getServiceNamed("client").jobs  # type: ignore[attr-defined]
        self.assertEqual(len(jobs.watchers), 1)
