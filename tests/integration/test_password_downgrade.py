"""
No stored password reaches a host over a weakened connection.

A fake PostgreSQL server on 127.0.0.1 refuses TLS (it answers C{N} to
psql's SSLRequest), asks for a cleartext password and records every byte it
receives. A configuration stored with C{sslmode=require} cannot be moved to
C{sslmode=disable} without giving the password again, so a connection test
afterwards still insists on TLS and sends the fake server no password.
"""

from __future__ import annotations

import shutil
import struct

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import SkipTest, TestCase

from backupremote.protocol import errors
from backupremote.protocol.databases import DatabaseConfigInput
from backupremote.server.machinery.toolfinder import defaultToolPath
from tests.integration.servers import startServer

PASSWORD = "never-in-clear-4b1f"
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104


class FakePostgreSQL(Protocol):
    """
    Speaks just enough of the PostgreSQL protocol to be sent a password:
    refuses TLS and GSSAPI encryption, asks for a cleartext password, then
    fails the login.
    """

    def __init__(self, received: list[bytes]) -> None:
        self.received = received
        self.buffer = b""
        self.started = False

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        self.buffer += data
        while self.transport is not None:
            if not self.started:
                # untyped messages: int32 length (itself included), int32 code
                if len(self.buffer) < 8:
                    return
                length, code = struct.unpack("!ii", self.buffer[:8])
                if len(self.buffer) < length:
                    return
                self.buffer = self.buffer[length:]
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self.transport.write(b"N")
                    continue
                self.started = True
                # AuthenticationCleartextPassword
                self.transport.write(b"R" + struct.pack("!ii", 8, 3))
            else:
                if len(self.buffer) < 5:
                    return
                length = struct.unpack("!i", self.buffer[1:5])[0]
                if len(self.buffer) < 1 + length:
                    return
                self.buffer = self.buffer[1 + length:]
                fields = (b"SFATAL\0VFATAL\0C28P01\0"
                          b"Mpassword authentication failed for user \"backup\"\0\0")
                self.transport.write(b"E" + struct.pack("!i", 4 + len(fields)) + fields)
                self.transport.loseConnection()
                return


class PasswordDowngradeTests(TestCase):
    async def test_noPasswordAfterRefusedDowngrade(self) -> None:
        if shutil.which("psql", path=":".join(defaultToolPath())) is None:
            raise SkipTest("psql is not installed")
        received: list[bytes] = []
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: FakePostgreSQL(received)),
                                 interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        server = await startServer(self)
        client = server.client(self)
        config = DatabaseConfigInput(
            name="shop", engine="postgresql", host="127.0.0.1", port=port.getHost().port,
            database="shop", user="backup", password=PASSWORD,
            options={"sslmode": "require"})

        # The fake server does catch a password sent in clear.
        result = await client.testDatabaseConnection(
            config=evolve(config, options={"sslmode": "disable"}))
        self.assertFalse(result.ok)
        self.assertIn(PASSWORD.encode(), b"".join(received))
        del received[:]

        created = await client.createDatabaseConfig(config)
        refusal: errors.BackupRemoteError | None = None
        try:
            await client.updateDatabaseConfig(
                created.id, created.version,
                evolve(config, password=None, options={"sslmode": "disable"}))
        except errors.BackupRemoteError as error:
            refusal = error

        result = await client.testDatabaseConnection(configId=created.id)
        self.assertFalse(result.ok)
        sent = b"".join(received)
        self.assertNotIn(PASSWORD.encode(), sent, "the stored password went out in clear")
        # psql did connect and asked for TLS, as stored; refused, it gave up
        self.assertIn(struct.pack("!ii", 8, SSL_REQUEST), sent)
        self.assertNotIn(b"user\0backup", sent)  # not even a startup message

        assert refusal is not None
        self.assertEqual(refusal.code, errors.VALIDATION_FAILED)
        self.assertEqual(set(refusal.details["fields"]), {"password"})
        self.assertIn("options.sslmode", refusal.message)
        stored = await client.getDatabaseConfig(created.id)
        self.assertEqual((stored.options, stored.version), ({"sslmode": "require"}, 1))
