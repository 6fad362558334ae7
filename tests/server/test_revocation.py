"""
A client the operator disables, removes or gives a new secret loses its
sessions: its next command gets C{AUTH_FAILED} and its connection closes,
and L{RevocationSweep} closes idle connections within seconds. Through the
real server wiring (L{ServerHarness}) on a fake clock.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol.databases import ListDatabaseConfigs
from backupremote.protocol.errors import AUTH_FAILED
from backupremote.protocol.session import Auth, Ping
from backupremote.protocol.versions import CURRENT_API_VERSION
from backupremote.server.admin.clients import ClientRegistry
from backupremote.server.edge.revocation import SWEEP_INTERVAL, RevocationSweep
from backupremote.server.state.secrethash import hashSecret
from backupremote.server.state.store import ServerStore
from tests.fixtures import CLIENT_ID, SECRET, Loopback, ServerHarness

OTHER = "bob"
OTHER_SECRET = "bob-" + SECRET


class RevocationTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ServerHarness(self, keepaliveInterval=3600, keepaliveTimeout=3600,
                                     authTimeout=3600)
        self.harness.store.addClient(OTHER, hashSecret(OTHER_SECRET))
        # what the CLI does, from another process, to the same database
        self.registry = ClientRegistry(self.harness.store)
        self.sweep = RevocationSweep(self.harness.core, self.harness.clock)
        self.sweep.startService()
        self.addCleanup(self.sweep.stopService)
        self.nextPort = 40000

    def connect(self) -> Loopback:
        self.nextPort += 1
        return self.harness.connect(port=self.nextPort)

    def session(self, clientId: str = CLIENT_ID, secret: str = SECRET) -> Loopback:
        loopback = self.connect()
        loopback.auth(self.harness, clientId=clientId, secret=secret,
                      license=self.harness.license(clientId))
        self.assertEqual(loopback.call(ListDatabaseConfigs)["page"].items, [])
        return loopback

    def authError(self, secret: str = SECRET) -> Any:
        return self.connect().error(
            Auth, clientId=CLIENT_ID, secret=secret, license=self.harness.license(),
            apiVersion=CURRENT_API_VERSION,
        )

    def sweepOnce(self, *loopbacks: Loopback) -> None:
        self.harness.clock.advance(SWEEP_INTERVAL)
        for loopback in loopbacks:
            loopback.pump.flush()

    def revoked(self) -> int:
        return self.harness.metrics.snapshot().get("auth.revoked", 0)

    def test_disabledClientsNextCommandFails(self) -> None:
        """
        The next command after a disable answers AUTH_FAILED and the
        connection closes; another client's session goes on.
        """
        alice = self.session()
        bob = self.session(OTHER, OTHER_SECRET)
        self.assertTrue(self.registry.setEnabled(CLIENT_ID, False))
        error = alice.error(ListDatabaseConfigs)
        self.assertEqual(error.code, AUTH_FAILED)
        self.assertIn("disabled or removed, or its secret was reset", error.message)
        self.assertTrue(alice.closed)
        self.assertNotIn(alice.server, self.harness.core.connections)
        self.assertEqual(bob.call(ListDatabaseConfigs)["page"].items, [])
        self.assertEqual(self.revoked(), 1)

    def cliRegistry(self) -> ClientRegistry:
        """The registry as the CLI opens it: its own connection to the same database."""
        store = ServerStore.inDataDir(self.harness.config.dataDir)
        self.addCleanup(store.close)
        return ClientRegistry(store)

    def test_otherConnectionsRevocationRefusesTheVeryNextCommand(self) -> None:
        """
        A disable, a new secret or a removal committed by another connection
        (the CLI's process) refuses the session's very next command, however
        many commands it answered before from what it keeps of the store.
        """
        for revoke in (lambda cli: cli.setEnabled(CLIENT_ID, False),
                       lambda cli: cli.resetSecret(CLIENT_ID),
                       lambda cli: cli.remove(CLIENT_ID)):
            # alice registered afresh with her secret, by the daemon's own connection
            self.harness.store.connection.execute(
                "DELETE FROM clients WHERE clientId = ?", (CLIENT_ID,))
            self.harness.store.addClient(CLIENT_ID, hashSecret(SECRET))
            cli = self.cliRegistry()
            alice = self.session()
            bob = self.session(OTHER, OTHER_SECRET)
            for _ in range(3):
                alice.call(Ping)
                bob.call(Ping)
            revoke(cli)
            error = alice.error(Ping)
            self.assertEqual(error.code, AUTH_FAILED)
            self.assertIn("disabled or removed, or its secret was reset", error.message)
            self.assertTrue(alice.closed)
            self.assertEqual(bob.call(ListDatabaseConfigs)["page"].items, [])

    def test_pingChecksToo(self) -> None:
        alice = self.session()
        self.registry.remove(CLIENT_ID)
        self.assertEqual(alice.error(Ping).code, AUTH_FAILED)
        self.assertTrue(alice.closed)

    def test_idleConnectionClosedBySweep(self) -> None:
        """A connection that sends nothing is closed by the next sweep."""
        alice = self.session()
        bob = self.session(OTHER, OTHER_SECRET)
        self.registry.setEnabled(CLIENT_ID, False)
        self.harness.clock.advance(SWEEP_INTERVAL - 0.1)
        alice.pump.flush()
        self.assertFalse(alice.closed)
        self.sweepOnce(alice, bob)
        self.assertTrue(alice.closed)
        self.assertFalse(bob.closed)
        self.assertNotIn(alice.server, self.harness.core.connections)
        self.assertEqual(self.revoked(), 1)

    def test_removedClientClosedBySweep(self) -> None:
        alice = self.session()
        self.registry.remove(CLIENT_ID)
        self.sweepOnce(alice)
        self.assertTrue(alice.closed)
        self.assertEqual(self.authError().code, AUTH_FAILED)

    def test_disabledClientCannotAuthenticate(self) -> None:
        self.registry.setEnabled(CLIENT_ID, False)
        self.assertEqual(self.authError().code, AUTH_FAILED)
        self.registry.setEnabled(CLIENT_ID, True)
        self.session()

    def test_resetSecretEndsOldSessions(self) -> None:
        """
        A new secret ends the sessions opened with the old one; the old
        secret no longer authenticates, the new one does and stays.
        """
        alice = self.session()
        newSecret = self.registry.resetSecret(CLIENT_ID)
        self.sweepOnce(alice)
        self.assertTrue(alice.closed)
        self.assertEqual(self.authError(SECRET).code, AUTH_FAILED)
        fresh = self.session(secret=newSecret)
        self.sweepOnce(fresh)
        self.assertFalse(fresh.closed)
        self.assertEqual(fresh.call(ListDatabaseConfigs)["page"].items, [])

    def test_enabledAgainBeforeTheSweep(self) -> None:
        """Disabled and enabled again between two sweeps: the session goes on."""
        alice = self.session()
        self.registry.setEnabled(CLIENT_ID, False)
        self.registry.setEnabled(CLIENT_ID, True)
        self.sweepOnce(alice)
        self.assertFalse(alice.closed)
        self.assertEqual(alice.call(ListDatabaseConfigs)["page"].items, [])

    def test_unauthenticatedConnectionsLeftAlone(self) -> None:
        """The sweep judges sessions, not connections that have not authenticated."""
        bare = self.connect()
        self.registry.setEnabled(CLIENT_ID, False)
        self.sweepOnce(bare)
        self.assertFalse(bare.closed)

    def test_sweepSurvivesADatabaseError(self) -> None:
        """An error reading the store is logged; the next sweep runs anyway."""
        alice = self.session()
        original = self.harness.core.authenticator.stillValid
        failures = [RuntimeError("database is locked")]

        def flaky(*args: Any) -> bool:
            if failures:
                raise failures.pop()
            return original(*args)

        self.patch(self.harness.core.authenticator, "stillValid", flaky)
        self.registry.setEnabled(CLIENT_ID, False)
        self.sweepOnce(alice)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(alice.closed)
        self.sweepOnce(alice)
        self.assertTrue(alice.closed)

    def test_auditRecordsOperatorActions(self) -> None:
        self.registry.setEnabled(CLIENT_ID, False)
        self.registry.setEnabled(CLIENT_ID, True)
        self.registry.resetSecret(CLIENT_ID)
        self.registry.remove(OTHER)
        trail = [row for row in self.harness.store.auditTrail() if row[1] == "operator"]
        self.assertEqual(trail, [
            (CLIENT_ID, "operator", "admin.disable", "ok"),
            (CLIENT_ID, "operator", "admin.enable", "ok"),
            (CLIENT_ID, "operator", "admin.reset-secret", "ok"),
            (OTHER, "operator", "admin.remove", "ok"),
        ])
