"""``pledgewatch statement LOAN_ID --from DATE --to DATE --config anchor.toml -o DIR``.

Writes the loan-period collateral statement (``anchor.statement``): statement.html,
statement.csv, movements.csv and consistency.json. The checkpoint notes are verified with the
log's public key: ``--log-key`` (64 hex digits), else the one of the anchor's key file.

Exit codes: 0 written; 1 refused or failed (unknown loan, no loan book, no checkpoint, a proof
that does not verify, a store or write error); 2 bad configuration, key or arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor import keyfile
from anchor.config import AnchorConfig
from anchor.errors import AnchorError, ConfigError
from anchor.statement import (
    DayStatus,
    LogTrust,
    PeriodError,
    Statement,
    build_statement,
    write_statement,
)
from anchor.store.schema import open_store
from pledgewatch.errors import PledgewatchError


def _date(text: str) -> dt.date:
    try:
        if len(text) != 10:
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, want a date like 2026-03-01") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("loan_id")
    parser.add_argument("--from", dest="start", type=_date, required=True, help="first day (UTC)")
    parser.add_argument("--to", dest="end", type=_date, required=True, help="last day (UTC)")
    parser.add_argument("--config", type=Path, required=True, help="the anchor's config")
    parser.add_argument("-o", "--output", type=Path, required=True, help="a folder")
    parser.add_argument(
        "--log-key", help="the log's Ed25519 public key, 64 hex (default: from key_file)"
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = anchor_config.load(args.config)
        trust = _trust(config, args.log_key)
        statement = _build(config, args, trust)
        paths = write_statement(statement, args.output)
    except (ConfigError, PeriodError, keyfile.KeyFileError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"error: cannot write the statement to {args.output}: {exc}", file=err)
        return 1
    print(_summary(statement, paths), file=out)
    return 0


def _trust(config: AnchorConfig, log_key: str | None) -> LogTrust:
    if log_key is None:
        public = keyfile.load(config.anchor.key_file, what="anchor key").public_key
    else:
        try:
            public = bytes.fromhex(log_key)
        except ValueError:
            public = b""
        if len(public) != 32:
            raise ConfigError("--log-key", [f"got {log_key!r}, want 64 hex digits"])
    witness = config.witness
    return LogTrust(
        origin=config.anchor.origin,
        public_key=public,
        witness_name=None if witness is None else witness.name,
        witness_key=None if witness is None else witness.public_key,
    )


def _build(config: AnchorConfig, args: argparse.Namespace, trust: LogTrust) -> Statement:
    db = open_store(config.anchor.store)
    try:
        now_ms = time.time_ns() // 1_000_000
        return build_statement(db, args.loan_id, args.start, args.end, trust, now_ms)
    finally:
        db.close()


def _summary(statement: Statement, paths: tuple[Path, ...]) -> str:
    counts = {status: 0 for status in DayStatus}
    for day in statement.days:
        counts[day.status] += 1
    days = ", ".join(f"{n} {status.value}" for status, n in counts.items() if n)
    c = statement.consistency
    return "\n".join(
        [
            f"loan {statement.loan.loan_id}, {statement.start} to {statement.end}: {days}",
            f"{len(statement.movements)} movements, {len(statement.alerts)} alerts",
            f"log consistent from checkpoint {c.old.size} to {c.new.size}"
            f" ({len(c.proof)} proof hashes, verified)",
            *(f"wrote {path}" for path in paths),
        ]
    )
