"""
The example alerting rules and Grafana dashboard in docs/monitoring/: the
rules pass ``promtool check rules`` (Debian's ``prometheus``, installed by
scripts/install-test-servers), and every metric either file names is one
the daemons expose.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from backupremote.metrics import ClientMetrics, ServerCollector
from backupremote.server.state.metrics import Metrics

DOCS = Path(__file__).resolve().parent.parent / "docs" / "monitoring"
RULES = DOCS / "backupremote-alerts.yml"
DASHBOARD = DOCS / "backupremote-dashboard.json"
_NAME = re.compile(r"\bbackupremote_[a-z_]+\b")


class _Load:
    runningCount = queuedCount = stagedCount = 0
    active: dict[str, Any] = {}

    class staging:
        @staticmethod
        def stagedBytes() -> int:
            return 0


class _Core:
    def __init__(self) -> None:
        self.metrics = Metrics()
        self.metrics.increment("license.denied.LICENSE_EXPIRED")
        self.metrics.increment("errors.NOT_FOUND")
        self.metrics.increment("runs.failed.DUMP_FAILED")
        self.metrics.observe("run", 3.0, engine="sqlite", state="completed")
        self.metrics.observe("stage.dump", 1.0)
        self.runs = self.artifacts = self.transfers = _Load()
        self.connections: set[Any] = set()


class _Status:
    connected = True
    licenseExpiresAt = datetime(2030, 1, 1, tzinfo=timezone.utc)


class _Servers:
    names = ("default",)

    def status(self, name: str) -> _Status:
        return _Status()


def exposedNames() -> set[str]:
    """Every sample name both daemons expose (each labelled family made to appear)."""
    names: set[str] = set()
    server = ServerCollector.registryFor(_Core(), Clock())
    client = ClientMetrics(Clock())
    client.sampleServers(_Servers())
    client.deliveryEnded("nas", "delivered", 1.0)
    client.circuit("nas", False)
    client.nextFire("nightly", datetime(2030, 1, 1, tzinfo=timezone.utc))
    client.jobDuration.labels("released").observe(1)
    client.stepDuration.labels("download").observe(1)
    registry: CollectorRegistry
    for registry in (server, client.registry):
        text = generate_latest(registry).decode("utf-8")
        for family in text_string_to_metric_families(text):
            names.update(sample.name for sample in family.samples)
    return names


def expressions() -> list[str]:
    rules = yaml.safe_load(RULES.read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads(DASHBOARD.read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


class MonitoringExamplesTests(SynchronousTestCase):
    def test_promtoolAcceptsTheRules(self) -> None:
        promtool = shutil.which("promtool")
        self.assertIsNotNone(promtool, "promtool (Debian prometheus): scripts/install-test-servers")
        assert promtool is not None
        done = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                              text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("SUCCESS", done.stdout)

    def test_everyNameIsExposed(self) -> None:
        exposed = exposedNames()
        used = {name for expr in expressions() for name in _NAME.findall(expr)}
        self.assertGreater(len(used), 20)
        self.assertEqual(used - exposed, set())

    def test_dashboardShape(self) -> None:
        dashboard = json.loads(DASHBOARD.read_text())
        self.assertEqual(dashboard["uid"], "backupremote")
        ids = [panel["id"] for panel in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        for panel in dashboard["panels"]:
            self.assertTrue(panel["targets"], panel["title"])

    def test_noUnboundedLabels(self) -> None:
        """No family has a label for ids: run, request, file or transfer."""
        for registry in (ServerCollector.registryFor(_Core(), Clock()), ClientMetrics(Clock()).registry):
            for family in text_string_to_metric_families(generate_latest(registry).decode()):
                for sample in family.samples:
                    self.assertFalse({"runId", "run", "requestId", "fileId", "transferId"}
                                     & set(sample.labels), sample)
