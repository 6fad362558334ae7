"""
OpenSSH's AES-GCM ciphers (C{aes128-gcm@openssh.com}, C{aes256-gcm@openssh.com},
RFC 5647 as OpenSSH amended it) for C{twisted.conch}, which lacks them.

Why: conch's ciphers pair AES-CTR with an HMAC that it builds anew for
every SSH packet of at most 32 KiB; HMAC-SHA-256 runs at about 0.7 GB/s on
the reactor thread, AES-GCM (one OpenSSL call per packet) at about 6 GB/s.

The framing differs from conch's: the packet length is sent in the clear
as the additional authenticated data, the padding aligns only what follows
it, the 16-byte tag replaces the MAC (the negotiated MAC is ignored, as
OpenSSH ignores it), and the 12-byte nonce is the 4 fixed bytes of the
derived IV and a 64-bit counter that counts packets.
"""

from __future__ import annotations

import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from twisted.conch.ssh import transport
from twisted.python import randbytes

#: The AES-GCM ciphers and their key sizes in bytes.
GCM_KEY_SIZES = {b"aes128-gcm@openssh.com": 16, b"aes256-gcm@openssh.com": 32}
_BLOCK = 16
_TAG = 16
_COUNTER_MASK = (1 << 64) - 1
#: conch's own limit on an incoming packet.
_MAX_PACKET = 1024 * 1024


class _GCM:
    """One direction: the key and the packet counter of the nonce."""

    def __init__(self, key: bytes, iv: bytes) -> None:
        self._aead = AESGCM(key)
        self._fixed = iv[:4]
        self._counter = int.from_bytes(iv[4:12], "big")

    def _nonce(self) -> bytes:
        nonce = self._fixed + self._counter.to_bytes(8, "big")
        self._counter = (self._counter + 1) & _COUNTER_MASK
        return nonce

    def seal(self, plain: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(), plain, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        return self._aead.decrypt(self._nonce(), sealed, aad)


class AEADCiphers(transport.SSHCiphers):
    """conch's C{SSHCiphers}, plus AES-GCM in either direction."""

    outGCM: _GCM | None = None
    inGCM: _GCM | None = None

    @classmethod
    def like(cls, ciphers: transport.SSHCiphers) -> AEADCiphers:
        """The same negotiated names, before any key is set."""
        return cls(ciphers.outCipType, ciphers.inCipType, ciphers.outMACType,
                   ciphers.inMACType)

    def setKeys(self, outIV: bytes, outKey: bytes, inIV: bytes, inKey: bytes,
                outInteg: bytes, inInteg: bytes) -> None:
        outGCM = self.outCipType in GCM_KEY_SIZES
        inGCM = self.inCipType in GCM_KEY_SIZES
        if not (outGCM or inGCM):
            super().setKeys(  # type: ignore[no-untyped-call]
                outIV, outKey, inIV, inKey, outInteg, inInteg)
            return
        if outGCM:
            self.outGCM = _GCM(outKey[:GCM_KEY_SIZES[self.outCipType]], outIV)
            self.encBlockSize = _BLOCK
        else:
            cipher = self._getCipher(  # type: ignore[no-untyped-call]
                self.outCipType, outIV, outKey)
            self.encryptor = cipher.encryptor()
            self.encBlockSize = cipher.algorithm.block_size // 8
            self.outMAC = self._getMAC(self.outMACType, outInteg)  # type: ignore[assignment]
        if inGCM:
            self.inGCM = _GCM(inKey[:GCM_KEY_SIZES[self.inCipType]], inIV)
            self.decBlockSize = _BLOCK
        else:
            cipher = self._getCipher(  # type: ignore[no-untyped-call]
                self.inCipType, inIV, inKey)
            self.decryptor = cipher.decryptor()
            self.decBlockSize = cipher.algorithm.block_size // 8
            self.inMAC = self._getMAC(self.inMACType, inInteg)  # type: ignore[assignment]
            if self.inMAC:
                self.verifyDigestSize = self.inMAC[3]


class AEADClientTransport(transport.SSHClientTransport):
    """
    conch's client transport that offers AES-GCM first and frames packets
    for it once it is in use; everything else is conch's.
    """

    supportedCiphers = list(GCM_KEY_SIZES) + [
        c for c in transport.SSHClientTransport.supportedCiphers if c not in GCM_KEY_SIZES]

    def ssh_KEXINIT(self, packet: bytes) -> Any:
        result = super().ssh_KEXINIT(packet)  # type: ignore[no-untyped-call]
        negotiated = getattr(self, "nextEncryptions", None)
        if negotiated is not None and not isinstance(negotiated, AEADCiphers):
            self.nextEncryptions = AEADCiphers.like(negotiated)
        return result

    def sendPacket(self, messageType: int, payload: bytes) -> None:
        ciphers = self.currentEncryptions
        gcm = ciphers.outGCM if isinstance(ciphers, AEADCiphers) else None
        if gcm is None:
            super().sendPacket(messageType, payload)  # type: ignore[no-untyped-call]
            return
        allowed = self._allowedKeyExchangeMessageType  # as conch does during a key exchange
        if (self._keyExchangeState != self._KEY_EXCHANGE_NONE
                and not allowed(messageType)):  # type: ignore[no-untyped-call]
            self._blockedByKeyExchange.append((messageType, payload))
            return
        payload = bytes((messageType,)) + payload
        if self.outgoingCompression:
            payload = (self.outgoingCompression.compress(payload)
                       + self.outgoingCompression.flush(2))
        # The padding aligns the padding length byte, the payload and itself.
        padding = _BLOCK - (1 + len(payload)) % _BLOCK
        if padding < 4:
            padding += _BLOCK
        length = struct.pack("!L", 1 + len(payload) + padding)
        sealed = gcm.seal(bytes((padding,)) + payload + randbytes.secureRandom(padding), length)
        assert self.transport is not None
        self.transport.write(length + sealed)
        self.outgoingPacketSequence += 1

    def getPacket(self) -> bytes | None:
        ciphers = self.currentEncryptions
        gcm = ciphers.inGCM if isinstance(ciphers, AEADCiphers) else None
        if gcm is None:
            return super().getPacket()  # type: ignore[no-untyped-call, no-any-return]
        buf: bytes = self.buf
        if len(buf) < 4:
            return None
        (length,) = struct.unpack("!L", buf[:4])
        if length > _MAX_PACKET or length % _BLOCK or length < _BLOCK:
            self.sendDisconnect(  # type: ignore[no-untyped-call]
                transport.DISCONNECT_PROTOCOL_ERROR, f"bad packet length {length}".encode())
            return None
        end = 4 + length + _TAG
        if len(buf) < end:
            return None
        self.buf = buf[end:]
        try:
            packet = gcm.open(buf[4:end], buf[:4])
        except InvalidTag:
            self.sendDisconnect(  # type: ignore[no-untyped-call]
                transport.DISCONNECT_MAC_ERROR, b"bad MAC")
            return None
        padding = packet[0]
        if padding < 4 or padding >= length:
            self.sendDisconnect(  # type: ignore[no-untyped-call]
                transport.DISCONNECT_PROTOCOL_ERROR, b"bad padding length")
            return None
        payload = packet[1:-padding]
        if self.incomingCompression:
            try:
                payload = self.incomingCompression.decompress(payload)
            except Exception:
                self.sendDisconnect(  # type: ignore[no-untyped-call]
                    transport.DISCONNECT_COMPRESSION_ERROR, b"compression error")
                return None
        self.incomingPacketSequence += 1
        return payload
