"""
Serving staged artifacts: manifests, leases and expiry (L{staged}), the
chunk stream of one transfer (L{sender}) and the server-wide table of
transfers (L{registry}).
"""
