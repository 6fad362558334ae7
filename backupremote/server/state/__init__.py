"""What the server knows: its SQLite store, client secrets' hashes, who owns what, its counters."""
