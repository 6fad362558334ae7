"""``backupremote server clients list|show|disable|enable|remove|reset-secret``."""

from __future__ import annotations

import argparse
from typing import Any

from twisted.python.filepath import FilePath

from backupremote.cli.output import Output
from backupremote.server.admin.clients import RegisteredClient, openRegistry
from backupremote.server.config import loadServerConfig

_CONFIG = "/etc/backupremote/server.toml"

#: What each action does, its example, and whether it takes a client id.
_ACTIONS = {
    "list": ("list the registered clients", f"server clients list --config {_CONFIG}"),
    "show": ("show one client", f"server clients show --config {_CONFIG} laptop"),
    "disable": ("refuse a client's auth and close its open connections",
                f"server clients disable --config {_CONFIG} laptop"),
    "enable": ("let a disabled client authenticate again",
               f"server clients enable --config {_CONFIG} laptop"),
    "remove": ("forget a client and its secret (its configurations and runs stay)",
               f"server clients remove --config {_CONFIG} laptop"),
    "reset-secret": ("give a client a new secret, printed once; the old one stops working "
                     "and its open connections are closed",
                     f"server clients reset-secret --config {_CONFIG} laptop "
                     "--secret-file laptop.secret"),
}


def register(serverCommands: Any) -> None:
    """Add C{clients} to the C{server} command's subcommands."""
    clients = serverCommands.add_parser(
        "clients", help="list, show, disable, enable, remove clients, or reset a secret",
        epilog=f"example: backupremote {_ACTIONS['list'][1]}",
    )
    sub = clients.add_subparsers(dest="clientsAction", required=True)
    for action, (help, example) in _ACTIONS.items():
        parser = sub.add_parser(action, help=help, epilog=f"example: backupremote {example}")
        parser.add_argument("--config", required=True, help="the server.toml")
        if action != "list":
            parser.add_argument("client_id")
        if action == "reset-secret":
            parser.add_argument("--secret-file", help="write the new secret to this new file "
                                "(0600) instead of printing it")
        parser.set_defaults(run=_RUNS[action])


def _describe(client: RegisteredClient) -> str:
    state = "enabled" if client.enabled else "DISABLED"
    last = (f"last auth {client.lastAuthAt} from {client.lastAuthPeer}"
            if client.lastAuthAt else "never authenticated")
    return f"{client.clientId}  {state}  registered {client.createdAt}  {last}"


def listClients(args: argparse.Namespace, output: Output) -> int:
    with openRegistry(loadServerConfig(FilePath(args.config))) as registry:
        clients = registry.all()
    output.result(clients, "\n".join(map(_describe, clients)) or
                  "no clients registered (add one with `backupremote server add-client`)")
    return 0


def showClient(args: argparse.Namespace, output: Output) -> int:
    with openRegistry(loadServerConfig(FilePath(args.config))) as registry:
        client = registry.get(args.client_id)
    output.result(client, _describe(client))
    return 0


def _setEnabled(args: argparse.Namespace, output: Output, enabled: bool) -> int:
    with openRegistry(loadServerConfig(FilePath(args.config))) as registry:
        changed = registry.setEnabled(args.client_id, enabled)
    word = "enabled" if enabled else "disabled"
    if not changed:
        human = f"{args.client_id} was already {word}"
    elif enabled:
        human = f"enabled {args.client_id}: it can authenticate again"
    else:
        human = (f"disabled {args.client_id}: its auth is refused, and a running server "
                 "closes its open connections within seconds")
    output.result({"clientId": args.client_id, "enabled": enabled, "changed": changed}, human)
    return 0


def disableClient(args: argparse.Namespace, output: Output) -> int:
    return _setEnabled(args, output, False)


def enableClient(args: argparse.Namespace, output: Output) -> int:
    return _setEnabled(args, output, True)


def removeClient(args: argparse.Namespace, output: Output) -> int:
    with openRegistry(loadServerConfig(FilePath(args.config))) as registry:
        registry.remove(args.client_id)
    output.result({"clientId": args.client_id, "removed": True},
                  f"removed {args.client_id}; a running server closes its open connections "
                  "within seconds (its configurations and runs are kept)")
    return 0


def resetSecret(args: argparse.Namespace, output: Output) -> int:
    secretFile = FilePath(args.secret_file) if args.secret_file else None
    with openRegistry(loadServerConfig(FilePath(args.config))) as registry:
        secret = registry.resetSecret(args.client_id, secretFile)
    after = ("; the old secret no longer works and a running server closes the "
             "connections opened with it")
    if secretFile is not None:
        output.result({"clientId": args.client_id, "secretFile": args.secret_file},
                      f"new secret for {args.client_id} in {args.secret_file} (only a hash "
                      f"is kept on the server){after}")
    else:
        output.result({"clientId": args.client_id, "secret": secret},
                      f"new secret for {args.client_id} (shown only now):\n  {secret}\n"
                      f"{after[2:]}")
    return 0


_RUNS = {
    "list": listClients,
    "show": showClient,
    "disable": disableClient,
    "enable": enableClient,
    "remove": removeClient,
    "reset-secret": resetSecret,
}
