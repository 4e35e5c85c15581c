"""``pledgewatch release keygen | issue | list``: the bank's release tokens.

``issue`` prints the signed token as one JSON line on stdout (or writes it to ``-o FILE``,
then prints the id); the id also goes to stderr when stdout carries the token, so a script
can pipe the token alone. The warehouse puts the id in the ``release`` field of the UNLOAD.

Exit codes: 0 success; 1 refused (the loan book does not allow the release) or failed;
2 bad configuration, key file or arguments (nothing was issued).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor import keyfile
from anchor.errors import AnchorError, ConfigError
from anchor.loans import load_book
from anchor.releases import issue, list_issued
from anchor.store.db import Database
from anchor.store.schema import open_store
from pledgewatch.errors import PledgewatchError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="release_command", required=True)
    keygen = sub.add_parser("keygen", help="create the bank's release key (mode 0600)")
    keygen.add_argument("--key", type=Path, required=True)
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    iss = sub.add_parser("issue", help="sign a release token for a pledged lot")
    iss.add_argument("--config", type=Path, required=True)
    iss.add_argument("--key", type=Path, required=True, help="the bank's release key file")
    iss.add_argument("--loan", required=True)
    iss.add_argument("--lot", required=True)
    iss.add_argument("--qty", type=int, required=True)
    iss.add_argument("--until", required=True, help="expiry, e.g. 2026-12-31T00:00:00Z")
    iss.add_argument("--warehouse", help="default: the loan's warehouse in the book")
    iss.add_argument("-o", "--output", type=Path, help="write the token here, not to stdout")
    listing = sub.add_parser("list", help="every token issued, in issue order")
    listing.add_argument("--config", type=Path, required=True)
    listing.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {"keygen": _keygen, "issue": _issue, "list": _list}
    try:
        return handlers[args.release_command](args, out, err)
    except (ConfigError, keyfile.KeyFileError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def parse_until(text: str) -> int:
    """``--until`` (ISO 8601 with a zone: ``2026-12-31T00:00:00Z``) as ms since 1970 UTC."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ConfigError(
            "--until", [f"got {text!r}, want a time with a zone, like 2026-12-31T00:00:00Z"]
        )
    return (moment - _EPOCH) // dt.timedelta(milliseconds=1)


def _open(args: argparse.Namespace) -> Database:
    return open_store(anchor_config.load(args.config).anchor.store)


def _keygen(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    key = keyfile.generate(args.key, overwrite=args.force, what="release key")
    print(f"key file:   {args.key}\nkey id:     {key.key_id}", file=out)
    print(f"public key: {key.public_key.hex()}", file=out)
    print(f'Give the reconciler:  [bank] release_public_key = "{key.public_key.hex()}"', file=out)
    return 0


def _issue(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.qty <= 0:
        raise ConfigError("--qty", [f"got {args.qty}, want at least 1"])
    until_ms = parse_until(args.until)
    key = keyfile.load(args.key, what="release key")
    db = _open(args)
    try:
        warehouse = args.warehouse
        if warehouse is None:
            loan = load_book(db).loan(args.loan)
            warehouse = "" if loan is None else loan.warehouse  # "" : issue names the loan
        now = time.time_ns() // 1_000_000
        wire = issue(
            db,
            key,
            warehouse=warehouse,
            loan_id=args.loan,
            lot=args.lot,
            qty=args.qty,
            until_ms=until_ms,
            now_ms=now,
        )
    finally:
        db.close()
    token_id = json.loads(wire)["token"]["id"]
    if args.output is None:
        out.write(wire.decode() + "\n")
        print(f"issued release token {token_id}", file=err)
    else:
        args.output.write_bytes(wire + b"\n")
        print(f"issued release token {token_id} -> {args.output}", file=out)
    return 0


def _list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    db = _open(args)
    try:
        issued = list_issued(db)
    finally:
        db.close()
    if args.json:
        rows = [
            {**i.token.body(), "book_version": i.book_version, "wire": i.wire.decode()}
            for i in issued
        ]
        print(json.dumps(rows, indent=2, sort_keys=True), file=out)
        return 0
    for i in issued:
        t = i.token
        print(
            f"{t.id}  loan={t.loan_id}  lot={t.lot}  qty={t.qty}  warehouse={t.warehouse}"
            f"  issued_ms={t.issued_ms}  expires_ms={t.expires_ms}",
            file=out,
        )
    return 0
