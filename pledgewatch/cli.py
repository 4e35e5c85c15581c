"""The ``pledgewatch`` command.

It parses arguments and dispatches to the package that does the work, importing it only when
its subcommand runs — so ``pledgewatch verify`` on an auditor's laptop needs only the core, and
a gateway needs no bank-side libraries. Only this module (and each package's ``command``
module it calls) prints and chooses exit codes.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pledgewatch import process

# subcommand -> (module with add_arguments/run, help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gateway.demo", "run the pipeline on embedded defaults (no servers needed)"),
    "gateway": ("gateway.command", "edge gateway: keygen, run, status"),
    "anchor": ("anchor.command", "bank side: run, keygen, enrol, revoke, quarantine, status"),
    "proof": ("anchor.proof_command", "write an event's self-contained proof file"),
    "export": ("anchor.export_command", "write the log as files a bank can re-check offline"),
    "reconcile": ("anchor.reconcile_command", "the rules at a time, over the store or an export"),
    "audit": ("anchor.audit_command", "recompute the log from raw rows; report tampering"),
    "simulate": ("devices.sim.command", "stream readings or signed messages of a scenario"),
    "verify": ("pledgewatch.verify_command", "check a proof file offline"),
    "witness": ("anchor.witness_command", "the bank's witness: keygen, run, show"),
    "alerts": ("anchor.alerts_command", "list, acknowledge, replay alerts; export evidence"),
    "loans": ("anchor.loans_command", "import and inspect the loan book"),
    "release": ("anchor.release_command", "issue and list the bank's release tokens"),
    "statement": ("anchor.statement_command", "loan-period collateral statement (HTML + CSV)"),
    "api": ("anchor.api_command", "the bank's read API (HTTP + officer page) and its tokens"),
    "dashboards": ("dashboards.command", "build the Grafana dashboards; push them to Grafana"),
}


def main(argv: Sequence[str] | None = None) -> int:
    process.block_during_imports()
    try:
        return _main(argv)
    finally:
        process.unblock()


def _main(argv: Sequence[str] | None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="pledgewatch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = next((a for a in args_list if a in COMMANDS), None)
    for name, (module_name, help_text) in COMMANDS.items():
        child = sub.add_parser(name, help=help_text)
        if name == wanted:
            importlib.import_module(module_name).add_arguments(child)
    args = parser.parse_args(args_list)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    module = importlib.import_module(COMMANDS[args.command][0])
    process.unblock()  # short commands keep Ctrl-C; long-running ones call handle_signals
    code: int = module.run(args, sys.stdout, sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
