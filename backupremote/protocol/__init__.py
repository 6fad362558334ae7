"""
The wire contract between a backupremote client and server.

Everything both sides must agree on lives here: the AMP commands, the
structured values they carry, the error registry and the API versions.
"""
