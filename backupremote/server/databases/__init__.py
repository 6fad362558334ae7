"""Database configurations on the server: storage, validation, tests, preflight."""
