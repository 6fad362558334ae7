"""
Serving staged artifacts: their manifests (L{manifest}), the chunk stream
of one transfer (L{sender}) and the server-wide table of transfers
(L{registry}). What is staged, its leases and expiry live in
L{backupremote.server.staging}.
"""
