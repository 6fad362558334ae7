"""Remote-orchestrated database backups on Twisted."""

__version__ = "0.1.0"
