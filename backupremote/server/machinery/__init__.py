"""The programs the server runs and the compressions it applies."""
