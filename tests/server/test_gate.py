"""
The pre-auth gate and the error contract, over in-memory AMP connections.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.protocols import amp
from twisted.protocols.amp import CommandLocator
from twisted.trial.unittest import SynchronousTestCase

from backupremote.protocol import errors
from backupremote.protocol.base import Request
from backupremote.protocol.commands import COMMANDS
from backupremote.protocol.session import Auth, Capabilities, Ping
from backupremote.protocol.versions import SOFTWARE_VERSION, SUPPORTED_API_VERSIONS
from backupremote.server.responders.groups import RESPONDER_GROUPS
from tests.fixtures import CLIENT_ID, SECRET, START, ServerHarness, errorBody


class Explode(Request):
    """A test-only command whose responder fails unexpectedly."""

    commandName = b"explode"
    arguments = [(b"count", amp.Integer())]
    response = [(b"count", amp.Integer())]


class ExplodeResponders(CommandLocator):
    calls: list[int] = []

    def __init__(self, core: Any, connection: Any) -> None:
        self.core = core

    @Explode.responder
    def explode(self, request: Any, count: int) -> dict[str, Any]:
        ExplodeResponders.calls.append(count)
        if count < 0:
            raise RuntimeError(f"boom with {SECRET} at /srv/secret/path")
        return {"count": count}


def instrument(loopback: Any) -> list[bytes]:
    """Replace every responder of a connection by a recorder; return the record."""
    ran: list[bytes] = []
    for name, (command, responder) in list(loopback.server.responders.items()):
        def recorder(request: Any, _name: bytes = name, _real: Any = responder, **kw: Any) -> Any:
            ran.append(_name)
            return _real(request, **kw)
        loopback.server.responders[name] = (command, recorder)
    return ran


class PreAuthGateTests(SynchronousTestCase):
    def setUp(self) -> None:
        ExplodeResponders.calls = []
        self.harness = ServerHarness(self, RESPONDER_GROUPS + (ExplodeResponders,))

    def test_everyRegisteredCommandIsGated(self) -> None:
        """
        Before auth, every registered command but auth and capabilities
        answers AUTH_REQUIRED, with or without valid arguments, and its
        responder never runs.
        """
        loopback = self.harness.connect()
        ran = instrument(loopback)
        names = sorted(loopback.server.responders)
        self.assertIn(b"explode", names)
        self.assertIn(b"ping", names)
        gated = [n for n in names if n not in (b"auth", b"capabilities")]
        for index, name in enumerate(gated):
            # a fresh connection each time so the violation limit does not close it
            loopback = self.harness.connect(port=41000 + index)
            ran = instrument(loopback)
            for box in ({}, {b"count": b"1", b"clientId": CLIENT_ID.encode()}):
                answer = loopback.sendBox(
                    {b"_command": name, b"_ask": b"1", b"requestId": b"r-1", **box}
                )
                self.assertEqual(answer[b"_error_code"], b"AUTH_REQUIRED", name)
                self.assertEqual(
                    errorBody(answer),
                    {
                        "errorCode": "AUTH_REQUIRED",
                        "errorMessage": "authenticate with `auth` before any other command",
                        "requestId": "r-1",
                    },
                )
            self.assertEqual(ran, [])
        self.assertEqual(ExplodeResponders.calls, [])

    def test_serverAnswersTheContract(self) -> None:
        """A connection answers every command of the protocol's table, and no other."""
        server = ServerHarness(self).connect().server
        self.assertEqual(
            {name: command for name, (command, _) in server.responders.items()},
            {name.encode("ascii"): command for name, command in COMMANDS.items()})

    def test_preAuthCommandsAnswer(self) -> None:
        """auth and capabilities are the commands answered before auth."""
        loopback = self.harness.connect()
        answer = loopback.call(Capabilities)
        self.assertEqual(answer["capabilities"].apiVersions, list(SUPPORTED_API_VERSIONS))
        self.assertIsNone(answer["capabilities"].offer)
        self.assertEqual(loopback.auth(self.harness)["apiVersion"], 1)

    def test_capabilitiesRevealNoConfigurationBeforeAuth(self) -> None:
        loopback = self.harness.connect()
        before = loopback.call(Capabilities)["capabilities"]
        self.assertIsNone(before.offer)
        self.assertIsNone(before.serverTime, "the server's clock is told after auth only")
        self.assertEqual(before.authMethods, ["secret+license"])
        loopback.auth(self.harness)
        after = loopback.call(Capabilities)["capabilities"]
        self.assertIn("remote.control", after.offer.features)
        self.assertEqual(after.serverTime.timestamp(), self.harness.clock.seconds())

    def test_unknownCommand(self) -> None:
        """Unknown names: AUTH_REQUIRED before auth, UNKNOWN_COMMAND after; no crash."""
        loopback = self.harness.connect()
        answer = loopback.sendBox({b"_command": b"rm -rf /", b"_ask": b"7"})
        self.assertEqual(answer[b"_error_code"], b"AUTH_REQUIRED")
        loopback.auth(self.harness)
        answer = loopback.sendBox({b"_command": b"noSuchCommand", b"_ask": b"8"})
        self.assertEqual(answer[b"_error_code"], b"UNKNOWN_COMMAND")
        self.assertFalse(loopback.closed)
        loopback.call(Ping)

    def test_repeatedViolationsClose(self) -> None:
        """The fifth gated command before auth closes the connection."""
        loopback = self.harness.connect()
        for _ in range(self.harness.config.maxViolationsPerConnection - 1):
            self.assertEqual(loopback.error(Ping).code, errors.AUTH_REQUIRED)
            self.assertFalse(loopback.closed)
        self.assertEqual(loopback.error(Ping).code, errors.AUTH_REQUIRED)
        self.assertTrue(loopback.closed)

    def test_commandsWithoutAnswerAreGatedToo(self) -> None:
        loopback = self.harness.connect()
        ran = instrument(loopback)
        self.assertIsNone(loopback.sendBox({b"_command": b"explode", b"count": b"1"}))
        self.assertEqual(ran, [])
        self.assertFalse(loopback.closed)


class AuthTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.harness = ServerHarness(self)

    def test_success(self) -> None:
        loopback = self.harness.connect()
        answer = loopback.auth(self.harness, requestId="abc-1")
        self.assertEqual(answer["requestId"], "abc-1")
        self.assertEqual(answer["serverVersion"], SOFTWARE_VERSION)
        self.assertIn("remote.control", answer["features"])
        self.assertTrue(loopback.server.session.authenticated)
        self.assertEqual(loopback.server.session.clientId, CLIENT_ID)
        loopback.call(Ping)

    def test_unknownClientAndWrongSecretLookTheSame(self) -> None:
        unknown = self.harness.connect(port=2)
        known = self.harness.connect(port=3)
        first = known.error(Auth, clientId=CLIENT_ID, secret="wrong",
                            license=self.harness.license(), apiVersion=1)
        second = unknown.error(Auth, clientId="mallory", secret=SECRET,
                               license=self.harness.license(clientId="mallory"), apiVersion=1)
        self.assertEqual((first.code, first.message), (second.code, second.message))
        self.assertEqual(first.code, errors.AUTH_FAILED)

    def test_threeFailedAuthsClose(self) -> None:
        loopback = self.harness.connect()
        for attempt in range(3):
            error = loopback.error(Auth, clientId=CLIENT_ID, secret=f"wrong{attempt}",
                                   license="x", apiVersion=1)
            self.assertEqual(error.code, errors.AUTH_FAILED)
            self.assertEqual(loopback.closed, attempt == 2)

    def test_peerRateLimit(self) -> None:
        """
        After too many failures from one address, even the right secret is
        refused from it (and not from others) until the lockout passes.
        """
        limit = self.harness.config.maxFailedAuthsPerPeer
        for attempt in range(limit):
            loopback = self.harness.connect(peerHost="198.51.100.7", port=attempt)
            self.assertEqual(
                loopback.error(Auth, clientId=CLIENT_ID, secret="wrong",
                               license="x", apiVersion=1).code,
                errors.AUTH_FAILED,
            )
        locked = self.harness.connect(peerHost="198.51.100.7", port=999)
        error = locked.error(Auth, clientId=CLIENT_ID, secret=SECRET,
                             license=self.harness.license(), apiVersion=1)
        self.assertEqual(error.code, errors.AUTH_RATE_LIMITED)
        self.assertIn("retry in", error.message)
        self.harness.connect(peerHost="198.51.100.8").auth(self.harness)
        self.harness.clock.advance(self.harness.config.peerLockoutSeconds + 1)
        self.harness.connect(peerHost="198.51.100.7", port=1000).auth(self.harness)

    def test_unsupportedApiVersion(self) -> None:
        loopback = self.harness.connect()
        error = loopback.error(Auth, clientId=CLIENT_ID, secret=SECRET,
                               license=self.harness.license(), apiVersion=99)
        self.assertEqual(error.code, errors.API_VERSION_UNSUPPORTED)
        self.assertEqual(error.details, {"supported": list(SUPPORTED_API_VERSIONS)})
        self.assertIn("supports: 1", error.message)
        self.assertFalse(loopback.server.session.authenticated)

    def test_alreadyAuthenticated(self) -> None:
        loopback = self.harness.connect()
        loopback.auth(self.harness)
        self.assertEqual(
            loopback.error(Auth, clientId=CLIENT_ID, secret=SECRET,
                           license=self.harness.license(), apiVersion=1).code,
            errors.ALREADY_AUTHENTICATED,
        )

    def test_secretIsStoredHashed(self) -> None:
        content = b"".join(
            child.getContent() for child in self.harness.config.dataDir.children()
            if child.isfile()
        )
        self.assertNotIn(SECRET.encode(), content)
        self.assertIn(b"hmac-sha256$", content)

    def test_auditTrail(self) -> None:
        self.harness.connect(port=5).auth(self.harness)
        self.harness.connect(port=6).error(Auth, clientId=CLIENT_ID, secret="no",
                                           license="x", apiVersion=1)
        self.assertEqual(
            [(c, a, o) for c, _, a, o in self.harness.store.auditTrail()],
            [(CLIENT_ID, "auth", "ok"), (None, "auth", "AUTH_FAILED")],
        )
        # stamped by the server's clock, as the runs are
        stamps = [at for (at,) in self.harness.store.connection.execute("SELECT at FROM audit")]
        self.assertEqual(set(stamps), {START.isoformat()})


class LicenseAtAuthTests(SynchronousTestCase):
    """Every licence denial has its own code, a log line and a counter."""

    def setUp(self) -> None:
        self.harness = ServerHarness(self)

    def deny(self, token: str) -> str:
        loopback = self.harness.connect()
        error = loopback.error(Auth, clientId=CLIENT_ID, secret=SECRET,
                               license=token, apiVersion=1)
        self.assertFalse(loopback.server.session.authenticated)
        self.assertEqual(self.harness.metrics.counters[f"license.denied.{error.code}"], 1)
        return error.code

    def test_malformed(self) -> None:
        self.assertEqual(self.deny("not a licence"), errors.LICENSE_MALFORMED)

    def test_badSignature(self) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        token = self.harness.license(key=Ed25519PrivateKey.generate())
        self.assertEqual(self.deny(token), errors.LICENSE_BAD_SIGNATURE)

    def test_otherClient(self) -> None:
        self.assertEqual(self.deny(self.harness.license(clientId="bob")),
                         errors.LICENSE_CLIENT_MISMATCH)

    def test_notYetValid(self) -> None:
        from datetime import datetime, timedelta, timezone
        now = datetime.fromtimestamp(self.harness.clock.seconds(), timezone.utc)
        token = self.harness.license(notBefore=now + timedelta(days=1))
        self.assertEqual(self.deny(token), errors.LICENSE_NOT_YET_VALID)

    def test_expired(self) -> None:
        from datetime import datetime, timedelta, timezone
        now = datetime.fromtimestamp(self.harness.clock.seconds(), timezone.utc)
        token = self.harness.license(notBefore=now - timedelta(days=9),
                                     expiresAt=now - timedelta(seconds=1))
        self.assertEqual(self.deny(token), errors.LICENSE_EXPIRED)

    def test_featureMissing(self) -> None:
        token = self.harness.license(features=("remote.execute",))
        self.assertEqual(self.deny(token), errors.LICENSE_FEATURE_MISSING)

    def test_noTrustedKey(self) -> None:
        from attrs import evolve
        self.harness.core.authenticator._verifier = evolve(
            self.harness.verifier, trustedKeys=()
        )
        self.assertEqual(self.deny(self.harness.license()), errors.LICENSE_NO_TRUSTED_KEY)

    def test_expiresMidSession(self) -> None:
        """The licence is checked again at each call: expiry ends the session's rights."""
        # keep-alive is not under test here: a month of silence must not abort
        self.harness = ServerHarness(self, keepaliveInterval=1e9, keepaliveTimeout=1e9)
        loopback = self.harness.connect()
        loopback.auth(self.harness)
        loopback.call(Capabilities)
        self.harness.clock.advance(31 * 86400)
        self.assertEqual(loopback.error(Capabilities).code, errors.LICENSE_EXPIRED)
        loopback.call(Ping)


class ErrorContractTests(SynchronousTestCase):
    def setUp(self) -> None:
        ExplodeResponders.calls = []
        self.harness = ServerHarness(self, RESPONDER_GROUPS + (ExplodeResponders,))
        self.loopback = self.harness.connect()
        self.loopback.auth(self.harness)

    def test_unexpectedExceptionAnswersInternalError(self) -> None:
        """
        A failing responder answers INTERNAL_ERROR without its message, paths
        or secrets, and the connection stays up.
        """
        answer = self.loopback.sendBox(
            {b"_command": b"explode", b"_ask": b"1", b"count": b"-1", b"requestId": b"q1"}
        )
        self.assertEqual(answer[b"_error_code"], b"INTERNAL_ERROR")
        body = errorBody(answer)
        self.assertEqual(body["requestId"], "q1")
        raw = answer[b"_error_description"].decode()
        for leak in ("boom", SECRET, "/srv", "Traceback", "RuntimeError"):
            self.assertNotIn(leak, raw)
        self.assertFalse(self.loopback.closed)
        self.assertEqual(self.loopback.call(Explode, count=3)["count"], 3)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_badArguments(self) -> None:
        for box in ({}, {b"count": b"many"}):
            answer = self.loopback.sendBox({b"_command": b"explode", b"_ask": b"2", **box})
            self.assertEqual(answer[b"_error_code"], b"BAD_REQUEST")
            self.assertIn("explode", errorBody(answer)["errorMessage"])
        self.assertEqual(ExplodeResponders.calls, [])
        self.assertFalse(self.loopback.closed)

    def test_requestIdEchoedOrMade(self) -> None:
        self.assertEqual(self.loopback.call(Explode, count=1, requestId="my-id")["requestId"], "my-id")
        made = self.loopback.call(Explode, count=1)["requestId"]
        self.assertRegex(made, r"^[0-9a-f-]{36}$")
        answer = self.loopback.sendBox(
            {b"_command": b"explode", b"_ask": b"3", b"count": b"1",
             b"requestId": b"bad id\n{injected}"}
        )
        self.assertRegex(answer[b"requestId"].decode(), r"^[0-9a-f-]{36}$")
        made = {self.loopback.call(Explode, count=1)["requestId"] for _ in range(20)}
        self.assertEqual(len(made), 20, "every made id is new")

    def test_descriptionIsJSON(self) -> None:
        answer = self.loopback.sendBox({b"_command": b"nope", b"_ask": b"4", b"requestId": b"z"})
        self.assertEqual(
            json.loads(answer[b"_error_description"]),
            {"errorCode": "UNKNOWN_COMMAND", "errorMessage": "unknown command 'nope'",
             "requestId": "z"},
        )
