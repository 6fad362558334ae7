"""
The ``backupremote`` console script.

Local commands (``server``, ``license``, ``client init``) run directly;
remote commands run on the reactor through the client library. Errors are
shown with their registry code and the action to take, never a traceback,
and map to distinct exit codes (see L{backupremote.cli.output}).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence, cast

from backupremote import __version__
from backupremote.cli.commands import COMMANDS, LazyCommands
from backupremote.private import usePrivateUmask

if TYPE_CHECKING:
    from backupremote.cli.output import Output
    from backupremote.reactors import ICommandReactor

# Start-up time matters here (``--help`` and ``--version`` answer at once):
# nothing is imported at the top but argparse and the table of commands (not
# even attrs); a command is added in backupremote.cli.commands.COMMANDS, and
# tests/cli/test_startup.py checks what ``--help`` imports.


def buildParser(whole: bool = True) -> argparse.ArgumentParser:
    """
    The parser of the command line; with C{whole=False}, a command's module
    is imported only when the command is parsed (what L{main} does).
    """
    parser = argparse.ArgumentParser(
        prog="backupremote",
        description="Remote-orchestrated database backups.",
        epilog="example: backupremote --config ~/.backupremote/client.toml capabilities",
    )
    parser.add_argument("--version", action="version", version=f"backupremote {__version__}")
    parser.add_argument("--config", help="the client.toml (default: $BACKUPREMOTE_CONFIG, else "
                        "~/.backupremote/client.toml); anywhere on the line")
    parser.add_argument("--server", metavar="NAME",
                        help="which server of client.toml (default: the only one)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="also say what happens underneath: connections, retries, requests")
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="no progress and no notes: only results and errors")
    commands = cast(LazyCommands, parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", action=LazyCommands))
    for name, module, help in COMMANDS:
        commands.addLazy(name, module, help)
    commands.onLoad = lambda: _addJSONToEveryCommand(parser)
    if whole:
        commands.loadAll()
    _addJSONToEveryCommand(parser)
    return parser


def _addJSONToEveryCommand(parser: argparse.ArgumentParser) -> None:
    """Accept ``--json`` after the subcommand as well as before it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                for flag in ("--config", "--server"):  # anywhere on the line
                    if flag not in sub._option_string_actions:
                        sub.add_argument(flag, default=argparse.SUPPRESS,
                                         metavar="NAME" if flag == "--server" else None,
                                         help=argparse.SUPPRESS)
                if "--json" not in sub._option_string_actions:
                    sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                                     help="print JSON for scripts")
                if not {"-v", "--verbose", "-q", "--quiet"} & set(sub._option_string_actions):
                    talk = sub.add_mutually_exclusive_group()
                    talk.add_argument("-v", "--verbose", action="store_true",
                                      default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                    talk.add_argument("-q", "--quiet", action="store_true",
                                      default=argparse.SUPPRESS, help=argparse.SUPPRESS)
                _addJSONToEveryCommand(sub)


def main(argv: Sequence[str] | None = None) -> int:
    # every file the command makes 0600, every folder 0700 (put back on
    # return for callers that run it in-process)
    previousUmask = usePrivateUmask()
    try:
        return _main(argv)
    finally:
        os.umask(previousUmask)


def _main(argv: Sequence[str] | None) -> int:
    parser = buildParser(whole=False)
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exit:
        if not exit.code:
            return 0
        from backupremote.cli.output import EXIT_USAGE

        return EXIT_USAGE
    from backupremote.cli.output import EXIT_INTERRUPTED, EXIT_USAGE, Output
    from backupremote.protocol.errors import BackupRemoteError

    if args.verbose and args.quiet:
        parser.print_usage(sys.stderr)
        sys.stderr.write("backupremote: error: --verbose and --quiet exclude each other\n")
        return EXIT_USAGE
    if not getattr(args, "config", None):
        args.config = defaultClientConfig()
    from twisted.logger import globalLogPublisher

    output = Output(args.json, quiet=args.quiet, verbose=args.verbose)
    observer = _notesTo(output)
    globalLogPublisher.addObserver(observer)
    try:
        if hasattr(args, "onReactor"):
            return _runOnReactor(args, output)
        return args.run(args, output)
    except BackupRemoteError as error:
        return output.error(error)
    except KeyboardInterrupt:
        output.interrupted()
        return EXIT_INTERRUPTED
    finally:
        globalLogPublisher.removeObserver(observer)


def defaultClientConfig() -> str | None:
    """C{$BACKUPREMOTE_CONFIG}, else C{~/.backupremote/client.toml} if it exists."""
    named = os.environ.get("BACKUPREMOTE_CONFIG")
    if named:
        return named
    home = os.path.join(os.path.expanduser("~"), ".backupremote", "client.toml")
    return home if os.path.exists(home) else None


def _notesTo(output: Output) -> Any:
    """
    What the client library logs, for a person: its warnings (a server that
    cannot be reached, and where) as notes, unless C{--quiet} or C{--json};
    with C{--verbose}, everything it logs.
    """

    from twisted.logger import LogLevel, formatEvent

    def observe(event: dict[str, Any]) -> None:
        if not str(event.get("log_namespace", "")).startswith("backupremote"):
            return
        level = event.get("log_level")
        if output.verbose:
            prefix = f"[{level.name if level else 'info'}] "
        elif output.quiet or output.asJSON or level != LogLevel.warn:
            return
        else:
            prefix = "note: "
        output.err.write(prefix + formatEvent(event) + "\n")
        output.err.flush()

    return observe


def _runOnReactor(args: argparse.Namespace, output: Output) -> int:
    """Run the command's coroutine on the reactor; errors become exit codes."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    from backupremote.cli.output import EXIT_INTERRUPTED

    codes: list[int] = []

    async def body(reactor: ICommandReactor) -> None:
        codes.append(await commandOnReactor(reactor, args, output))

    try:
        react(lambda reactor: Deferred.fromCoroutine(body(reactor)))
    except SystemExit:
        pass
    if codes:
        return codes[0]
    # no code: the reactor stopped before the command ended (Ctrl-C)
    output.interrupted()
    return EXIT_INTERRUPTED


async def commandOnReactor(reactor: ICommandReactor, args: argparse.Namespace,
                           output: Output) -> int:
    """
    Run a parsed command's coroutine on a running reactor: its exit code,
    an error shown with its registry code and what to do, never a traceback.
    """
    from backupremote.protocol.errors import INTERNAL_ERROR, BackupRemoteError

    try:
        code: int = await args.onReactor(reactor, args, output)
        return code
    except BackupRemoteError as error:
        return output.error(error)
    except Exception as error:
        return output.error(BackupRemoteError(INTERNAL_ERROR, f"unexpected: {error!r}"))


def run() -> None:
    """Console-script entry point."""
    from backupremote.cli.lazyimports import deferUnusedImports

    deferUnusedImports()
    code = main()
    # The process ends here: nothing it holds needs collecting. Frozen, its
    # objects are skipped by the collections of the interpreter's shutdown
    # (~45 ms of a download's ~540 modules; 5 ms left).
    import gc

    gc.freeze()
    sys.exit(code)
