"""
How both ends tune the TCP connection under a client-server connection,
when it is made: Nagle off on both, and larger reads on the client's, where
a download's chunks arrive.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import FileDescriptor

#: Bytes the client asks its socket for per read (Twisted's default: 64 KiB).
RECEIVE_BLOCK = 512 * 1024


def noDelay(transport: Any) -> None:
    """
    Send small writes at once. With Nagle's algorithm the tail of each
    ``fileChunk`` box and each acknowledgement wait for the peer's ACK and
    the window stalls: measured on loopback TLS, ~100 MB/s with Nagle and
    ~175 MB/s without, and both ends need it. Control requests too: a
    request written after the TLS handshake or ``auth`` waited 40 ms for the
    peer's delayed ACK (``db list`` round trip 0.072 s with Nagle, 0.029 s
    without). A TLS transport passes the call on to its TCP transport; other
    transports are left alone.
    """
    setTcpNoDelay = getattr(transport, "setTcpNoDelay", None)
    if setTcpNoDelay is not None:
        try:
            setTcpNoDelay(True)
        except OSError:
            pass


def socketTransport(transport: Any) -> FileDescriptor | None:
    """
    The reactor's own transport under C{transport} (TLS and the endpoints'
    wrappers each hold the one below as C{transport}), or C{None}.
    """
    for _ in range(8):
        if isinstance(transport, FileDescriptor):
            return transport
        # the instance's own attribute: a wrapper's __getattr__ would answer for the one below
        transport = getattr(transport, "__dict__", {}).get("transport")
    return None


def readInBlocks(transport: Any, size: int = RECEIVE_BLOCK) -> None:
    """
    Read up to C{size} bytes per system call. A download's receiving
    reactor otherwise makes ~16,000 reads, TLS record batches and reactor
    turns per GiB: with 512 KiB reads, ~3,000, and a 1 GiB download through
    the client library took 2.46-2.53 s instead of 3.2-3.3 s on loopback
    (docs/benchmarks.md). Costs a transient buffer of C{size} per read, so
    only the client (a few connections) does it. (The server keeps
    Twisted's 128 KiB sends: 512 KiB ones gained the download nothing
    measurable, and four downloads held its reactor so long that a control
    request's p99 rose from 20-33 ms to 32-97 ms, benchmarks/load.py.)
    """
    below = socketTransport(transport)
    if below is not None:
        below.bufferSize = size
