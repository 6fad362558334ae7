"""Backup runs on the server: started only by a client's command."""
