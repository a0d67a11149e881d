"""The ``orca`` command: ``orca run`` in the cluster, ``orca agent`` on an instance,
``orca cost`` for the people who watch the budget."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from orca import __version__, cost_command
from orca.logging_setup import configure_logging
from orca.settings import SettingsError, load_settings

log = logging.getLogger("orca")


def _run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        sys.stderr.write(f"orca: {e}\n")
        return 2
    if settings.budget is None:
        # The runtime's promise is that a department's budget holds; without one it would
        # launch whatever is asked. (Tests build runtimes without one; a person cannot.)
        sys.stderr.write(
            "orca: the ORCA runtime cannot start without a budget: set "
            "ORCA_BUDGET__LEDGER_TABLE (the stack's ledgerTable output) and "
            "ORCA_BUDGET__MONTHLY_USD (its budget), as the Pulumi program does\n"
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)

    from orca.runtime import build_runtime

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    runtime = build_runtime(settings)
    runtime.run_until(stop)
    return 0


def _check_settings(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as e:
        sys.stderr.write(f"orca: {e}\n")
        return 2
    sys.stdout.write(settings.model_dump_json(indent=2) + "\n")
    return 0


def _agent(argv: Sequence[str]) -> int:
    from orca.agent import cli_main

    return cli_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orca", description="ORCA: burst Kubernetes pods to EC2 instances."
    )
    parser.add_argument("--version", action="version", version=f"orca {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser(
        "run",
        help="run the department's virtual node (settings from ORCA_* variables)",
        description="Run the department's virtual node until SIGTERM. Settings come from "
        "ORCA_* environment variables or the YAML file named by ORCA_SETTINGS_FILE; "
        "`orca settings` validates them and lists every key.",
    )
    run.set_defaults(handler=_run)

    check = commands.add_parser("settings", help="validate the settings and print them")
    check.set_defaults(handler=_check_settings)

    cost_command.add_parser(commands)

    # The agent parses its own arguments (orca agent --help); listed here for orca --help.
    commands.add_parser("agent", help="run the pod on this EC2 instance", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        return _agent(argv[1:])
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
