"""
One SSH connection with an SFTP channel on it, by C{twisted.conch}: connect,
check the host key (L{HostKeyPolicy}), log in (L{SSHCredentials}), start
the C{sftp} subsystem, and hand over a L{FileTransferClient} whose every
request times out.

Failures become L{BackupRemoteError}s: C{DESTINATION_UNREACHABLE} (no
connection, or it was lost), C{DESTINATION_IDENTITY_MISMATCH} (host key),
C{DESTINATION_AUTH_FAILED} (login), C{TIMEOUT}.
"""

from __future__ import annotations

from typing import Any

from twisted.conch.ssh import channel, common, connection, filetransfer, transport, userauth
from twisted.conch.ssh.keys import Key
from twisted.internet import error as netError
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from backupremote.client.destinations.sshaead import AEADClientTransport
from backupremote.client.destinations.sshkeys import HostKeyPolicy, SSHCredentials
from backupremote.protocol.errors import (
    DESTINATION_AUTH_FAILED,
    DESTINATION_UNREACHABLE,
    TIMEOUT,
    BackupRemoteError,
)
from backupremote.reactors import IConnectingReactor

#: Bytes the server may send on the channel before we read them: large
#: enough that a pipelined read-back never waits for a window adjustment.
CHANNEL_WINDOW = 4 * 1024 * 1024
CHANNEL_MAX_PACKET = 32768


class SFTPClient(filetransfer.FileTransferClient):
    """A C{FileTransferClient} whose requests time out, and that knows the server's extensions."""

    def __init__(self, session: SSHSession) -> None:
        super().__init__()
        self.session = session
        self.extensions: dict[bytes, bytes] = {}
        self.ready: Deferred[SFTPClient] = Deferred()

    def gotServerVersion(self, serverVersion: int, extData: dict[bytes, bytes]) -> None:
        self.extensions = dict(extData)
        self.ready.callback(self)

    def _sendRequest(self, msg: int, data: bytes) -> Deferred[Any]:
        request = super()._sendRequest(msg, data)
        if not request.called:
            request.addTimeout(self.session.timeout, self.session.reactor,
                               onTimeoutCancel=self.session.requestTimedOut)
        return request


class _SFTPChannel(channel.SSHChannel):
    name = b"session"

    def __init__(self, session: SSHSession, **kwargs: Any) -> None:
        super().__init__(localWindow=CHANNEL_WINDOW, localMaxPacket=CHANNEL_MAX_PACKET, **kwargs)
        self.session = session
        self.client: SFTPClient | None = None

    def channelOpen(self, specificData: bytes) -> None:
        request = self.conn.sendRequest(self, b"subsystem", common.NS(b"sftp"), wantReply=True)
        request.addCallbacks(self._subsystemStarted, self._subsystemRefused)

    def _subsystemStarted(self, _: Any) -> None:
        self.client = SFTPClient(self.session)
        self.client.makeConnection(self)
        self.dataReceived = self.client.dataReceived  # type: ignore[method-assign]
        self.client.ready.addCallbacks(self.session.sftpReady, self.session.fail)

    def _subsystemRefused(self, reason: Failure) -> None:
        self.session.fail(BackupRemoteError(
            DESTINATION_UNREACHABLE,
            f"the SSH server at {self.session.where} refused the sftp subsystem"))

    def openFailed(self, reason: Failure) -> None:
        self.session.fail(BackupRemoteError(
            DESTINATION_UNREACHABLE,
            f"the SSH server at {self.session.where} refused a session channel: {reason.value}"))

    def closed(self) -> None:
        if self.client is not None:
            self.client.connectionLost(Failure(netError.ConnectionDone()))
        self.loseConnection()
        self.session.abort()


class _Connection(connection.SSHConnection):
    def __init__(self, session: SSHSession) -> None:
        super().__init__()
        self.session = session

    def serviceStarted(self) -> None:
        self.session.stage = "sftp"
        self.openChannel(_SFTPChannel(self.session, conn=self))


class _UserAuth(userauth.SSHUserAuthClient):
    """Offers the key once and the password once; the server decides."""

    def __init__(self, session: SSHSession, user: bytes, instance: Any) -> None:
        super().__init__(user, instance)
        self.session = session
        self._key: Key | None = session.key
        self._password = session.credentials.password

    def getPublicKey(self) -> Key | None:
        key, self._key = self._key, None
        return key.public() if key is not None else None

    def getPrivateKey(self) -> Deferred[Key]:
        assert self.session.key is not None
        return succeed(self.session.key)

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:
        password, self._password = self._password, None
        return succeed(password.encode("utf-8")) if password is not None else None


#: Only what OpenSSH offers by default and considers sound (no CBC, no 3DES,
#: no MD5 or SHA-1 MACs), fastest first: AES-GCM (L{sshaead}: no per-packet
#: HMAC), then AES-CTR with HMAC-SHA-256 (SHA extensions) over HMAC-SHA-512.
CIPHERS = [b"aes128-gcm@openssh.com", b"aes256-gcm@openssh.com",
           b"aes128-ctr", b"aes256-ctr", b"aes192-ctr"]
MACS = [b"hmac-sha2-256", b"hmac-sha2-512"]


class _Transport(AEADClientTransport):
    supportedCiphers = [c for c in CIPHERS if c in AEADClientTransport.supportedCiphers]
    supportedMACs = [m for m in MACS if m in AEADClientTransport.supportedMACs]

    def __init__(self, session: SSHSession) -> None:
        self.session = session
        self._secured = False
        preferred = session.policy.preferredKeyTypes(session.host, session.port)
        if preferred:
            self.supportedPublicKeys = (
                [t for t in self.supportedPublicKeys if t in preferred]
                + [t for t in self.supportedPublicKeys if t not in preferred])

    def verifyHostKey(self, hostKey: bytes, fingerprint: bytes) -> Deferred[bool]:
        try:
            self.session.policy.check(self.session.host, self.session.port,
                                      Key.fromString(hostKey))
        except BackupRemoteError as e:
            self.session.error = e
            return fail(e)
        if self.session.stage == "connecting":
            self.session.stage = "auth"
        return succeed(True)

    def connectionSecure(self) -> None:
        # conch calls this after every key exchange: a re-key (OpenSSH starts
        # one after 64 GiB with AES) must not log in again.
        if self._secured:
            return
        self._secured = True
        self.requestService(_UserAuth(
            self.session, self.session.user.encode("utf-8"), _Connection(self.session)))

    def sendDisconnect(self, reason: int, desc: bytes) -> None:
        if reason == transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE:
            self.session.authFailed()
        super().sendDisconnect(reason, desc)

    def receiveError(self, reasonCode: int, description: bytes) -> None:
        if self.session.stage == "auth":
            self.session.authFailed()
        super().receiveError(reasonCode, description)

    def connectionLost(self, reason: Failure | None = None) -> None:
        super().connectionLost(reason)
        self.session.connectionLost(reason)


class SSHSession:
    """
    One connection attempt and, once it is ready, the connection: L{ready}
    fires with the L{SFTPClient}, L{lost} when the connection is gone.
    """

    def __init__(self, reactor: IConnectingReactor, host: str, port: int, user: str,
                 credentials: SSHCredentials, policy: HostKeyPolicy, timeout: float) -> None:
        self.reactor = reactor
        self.host = host
        self.port = port
        self.user = user
        self.credentials = credentials
        self.policy = policy
        self.timeout = timeout
        self.where = f"{host}:{port}"
        self.key = credentials.loadKey()
        self.stage = "connecting"
        self.error: BackupRemoteError | None = None
        self.transport: _Transport | None = None
        self.client: SFTPClient | None = None
        self.ready: Deferred[SFTPClient] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self._connected = False

    def connect(self) -> Deferred[SFTPClient]:
        endpoint = HostnameEndpoint(self.reactor, self.host, self.port, timeout=self.timeout)
        factory = Factory.forProtocol(lambda: _Transport(self))
        self._connecting = connecting = endpoint.connect(factory)
        connecting.addCallbacks(self._tcpConnected, self._tcpFailed)
        timer = self.reactor.callLater(self.timeout, self._setupTimedOut)

        def stopTimer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        self.ready.addBoth(stopTimer)
        return self.ready

    def _tcpConnected(self, protocol: _Transport) -> None:
        self._connected = True
        self.transport = protocol

    def _tcpFailed(self, reason: Failure) -> None:
        self.fail(BackupRemoteError(
            DESTINATION_UNREACHABLE,
            f"cannot connect to the SSH server at {self.where}: {_describe(reason)}"))

    def _setupTimedOut(self) -> None:
        self.error = self.error or BackupRemoteError(
            TIMEOUT, f"the SSH server at {self.where} did not complete the login within "
                     f"{self.timeout:g} s (stage: {self.stage})")
        if not self._connecting.called:
            self._connecting.cancel()
        self.abort()
        self.fail(self.error)

    def sftpReady(self, client: SFTPClient) -> None:
        self.stage = "ready"
        self.client = client
        if not self.ready.called:
            self.ready.callback(client)

    def authFailed(self) -> None:
        self.error = self.error or BackupRemoteError(
            DESTINATION_AUTH_FAILED,
            f"the SSH server at {self.where} refused the login of {self.user!r} with the "
            "configured " + " and ".join(
                what for what, given in (("key", self.key is not None),
                                         ("password", self.credentials.password is not None))
                if given))

    def requestTimedOut(self, result: Any, timeout: float) -> Failure:
        self.error = self.error or BackupRemoteError(
            TIMEOUT, f"the SSH server at {self.where} did not answer within {timeout:g} s")
        self.abort()
        return Failure(self.error)

    def fail(self, reason: BackupRemoteError | Failure) -> None:
        error = reason.value if isinstance(reason, Failure) else reason
        if self.error is None and isinstance(error, BackupRemoteError):
            self.error = error
        self.abort()
        if not self.ready.called:
            self.ready.errback(self.failure())

    def failure(self) -> Failure:
        """Why the connection failed or was lost, as a registry error."""
        return Failure(self.error or BackupRemoteError(
            DESTINATION_UNREACHABLE,
            f"the connection to the SSH server at {self.where} was lost"
            + (" during the login" if self.stage not in ("ready", "closing") else "")))

    def abort(self) -> None:
        if self.transport is not None and self.transport.transport is not None:
            self.transport.transport.abortConnection()

    def close(self) -> Deferred[None]:
        if self.lost.called:
            return succeed(None)
        self.stage = "closing"
        if self.transport is not None and self.transport.transport is not None:
            self.transport.transport.loseConnection()
        elif not self._connected:
            return succeed(None)
        waiting: Deferred[None] = Deferred()
        self.lost.addBoth(lambda _: waiting.callback(None))
        return waiting

    def connectionLost(self, reason: Failure | None) -> None:
        if not self.ready.called:
            self.ready.errback(self.failure())
        if not self.lost.called:
            self.lost.callback(None)

    @property
    def negotiated(self) -> dict[str, str]:
        """The cipher and MAC in use each way (an AEAD cipher ignores its MAC)."""
        if self.transport is None or not self.alive:
            return {}
        ciphers = self.transport.currentEncryptions
        return {"out": ciphers.outCipType.decode(), "outMAC": ciphers.outMACType.decode(),
                "in": ciphers.inCipType.decode(), "inMAC": ciphers.inMACType.decode()}

    @property
    def alive(self) -> bool:
        return self.stage == "ready" and not self.lost.called


def _describe(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, netError.ConnectionRefusedError):
        return "connection refused"
    if isinstance(value, netError.DNSLookupError):
        return "the name does not resolve"
    if isinstance(value, (netError.TimeoutError, netError.UserError)):
        return "timed out"
    return str(value) or type(value).__name__
