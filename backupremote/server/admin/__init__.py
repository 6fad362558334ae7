"""The operator's side, run by the CLI beside the daemon: making a server folder, managing clients, rotating the certificate."""
