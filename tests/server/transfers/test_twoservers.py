"""
Two servers in one process: each has its own staging, as two servers of one
OS account on one machine do.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.transfers import ListFiles, ReleaseArtifact
from tests.server.transfers.helpers import StagingMixin, folderNames


class TwoServersTests(StagingMixin, SynchronousTestCase):
    def setUp(self) -> None:
        # the same OS temp folder for both, as for two servers of one account
        temp = FilePath(self.mktemp())
        temp.makedirs()
        self.setUpStaging(tempDir=temp)
        self.first = (self.harness, self.client, self.configId)
        self.setUpStaging(tempDir=temp)
        self.second = (self.harness, self.client, self.configId)

    def test_separateStaging(self) -> None:
        """
        Building the second server leaves the first one's staging where it
        was; each stages, sweeps and releases only its own runs.
        """
        (first, firstClient, firstConfig), (second, secondClient, secondConfig) = (
            self.first, self.second)
        self.assertEqual(first.staging.root, second.staging.root)
        self.assertNotEqual(first.staging.runs, second.staging.runs)
        self.harness, self.client, self.configId = first, firstClient, firstConfig
        self.stage("one")
        self.harness, self.client, self.configId = second, secondClient, secondConfig
        self.stage("two")
        self.assertEqual(folderNames(first.staging.runs), ["one"])
        self.assertEqual(folderNames(second.staging.runs), ["two"])
        # the second server's start-up sweep does not touch the first's runs
        second.janitor.startService()
        self.assertEqual(folderNames(first.staging.runs), ["one"])
        manifest = firstClient.call(ListFiles, runId="one")["manifest"]
        self.assertEqual(manifest.runId, "one")
        self.assertTrue(firstClient.call(ReleaseArtifact, runId="one")["released"])
        self.assertEqual(folderNames(first.staging.runs), [])
        self.assertEqual(folderNames(second.staging.runs), ["two"])
