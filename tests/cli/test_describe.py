"""How the CLI shows a run's status."""

from __future__ import annotations

from attrs import evolve
from twisted.trial.unittest import SynchronousTestCase

from backupremote.cli.runs import describeStatus
from backupremote.protocol.options import BackupOptions
from backupremote.protocol.runs import ArtifactInfo, RunStatus

ARTIFACT = ArtifactInfo("f-1", "shop-20261129T031500Z.dump.zst", 4_338_553, "sha256", "ab" * 32)
DONE = RunStatus(runId="r-1", databaseConfigId="db-1", clientId="laptop",
                 options=BackupOptions(), state="completed", stage="finalizing",
                 artifact=ARTIFACT)


class DescribeStatusTests(SynchronousTestCase):
    def test_stagedArtifact(self) -> None:
        text = describeStatus(DONE)
        self.assertIn("run r-1: completed", text)
        self.assertIn("artifact: shop-20261129T031500Z.dump.zst", text)
        self.assertNotIn("no longer on the server", text)

    def test_releasedArtifact(self) -> None:
        """After releaseArtifact or expiry the artifact is still named, marked gone."""
        text = describeStatus(evolve(DONE, artifact=evolve(ARTIFACT, staged=False)))
        self.assertIn("shop-20261129T031500Z.dump.zst", text)
        self.assertIn("(released or expired: no longer on the server)", text)


class DescribeEngineTests(SynchronousTestCase):
    """One pair of parentheses around an engine's tool, in-process or not."""

    def test_inProcessTool(self) -> None:
        from backupremote.cli.remote import describeEngine
        from backupremote.protocol.models import EngineCapability

        self.assertEqual(describeEngine(EngineCapability("sqlite", "(in-process)", "3.40.1")),
                         "sqlite (in-process 3.40.1)")
        self.assertEqual(describeEngine(EngineCapability(
            "postgresql", "/usr/lib/postgresql/16/bin/pg_dump", "16.4")),
            "postgresql (/usr/lib/postgresql/16/bin/pg_dump 16.4)")


class DescribeCapabilitiesTests(SynchronousTestCase):
    def test_chunkLimits(self) -> None:
        """The offer's chunk limits get a line; a server that sends none gets no line."""
        from backupremote.cli.remote import describeCapabilities
        from backupremote.protocol.models import Capabilities, ChunkLimits, ServerOffer

        offer = ServerOffer(chunkLimits=ChunkLimits(65_000, 8, 48))
        text = describeCapabilities(Capabilities([1], "0.1.0", ["secret+license"], offer))
        self.assertIn("chunks:         65,000 bytes, 8 a box, 48 in flight", text)
        older = Capabilities([1], "0.1.0", ["secret+license"], ServerOffer())
        self.assertNotIn("chunks:", describeCapabilities(older))
