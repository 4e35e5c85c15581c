"""``pledgewatch loans import | list | repay | show``: the loan book from the command line.

Exit codes: 0 success; 1 refused or failed (a CSV with problems — every one is printed and
nothing is imported —, an unknown loan, a store error); 2 bad configuration or arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor.errors import AnchorError, ConfigError
from anchor.loanbook import Loan, LoanBook
from anchor.loans import LoanBookError, import_csv, list_versions, load_book, parse_amount, repay
from anchor.store.db import Database
from anchor.store.schema import open_store
from pledgewatch.errors import PledgewatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="loans_command", required=True)
    imp = sub.add_parser("import", help="validate three CSV files and store them as a new version")
    imp.add_argument("--config", type=Path, required=True)
    imp.add_argument("--loans", type=Path, required=True, help="loans.csv")
    imp.add_argument("--pledges", type=Path, required=True, help="pledges.csv")
    imp.add_argument("--prices", type=Path, required=True, help="prices.csv")
    imp.add_argument(
        "--valid-from",
        type=_day,
        help="in force from this UTC day, YYYY-MM-DD (default: now), for loans already running "
        "when monitoring starts; refused if before the latest version",
    )
    listing = sub.add_parser("list", help="the loans of the current (or --version) book")
    listing.add_argument("--config", type=Path, required=True)
    listing.add_argument("--version", type=int)
    listing.add_argument("--json", action="store_true")
    pay = sub.add_parser("repay", help="set a loan's outstanding amount (a new book version)")
    pay.add_argument("--config", type=Path, required=True)
    pay.add_argument("--loan", required=True)
    pay.add_argument("--outstanding", required=True, help="the new amount, e.g. 800000.00")
    show = sub.add_parser("show", help="one loan: its terms, pledges and latest prices")
    show.add_argument("loan_id")
    show.add_argument("--config", type=Path, required=True)
    show.add_argument("--version", type=int)
    show.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {"import": _import, "list": _list, "repay": _repay, "show": _show}
    try:
        return handlers[args.loans_command](args, out)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _day(text: str) -> int:
    """``YYYY-MM-DD`` → ms at 00:00 UTC of that day."""
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, want a date like 2026-03-01") from None
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1000


def _open(args: argparse.Namespace) -> Database:
    return open_store(anchor_config.load(args.config).anchor.store)


def _import(args: argparse.Namespace, out: TextIO) -> int:
    db = _open(args)
    try:
        valid_from = _now_ms() if args.valid_from is None else args.valid_from
        version = import_csv(db, args.loans, args.pledges, args.prices, valid_from)
        book = load_book(db, version)
    finally:
        db.close()
    print(
        f"imported loan book version {version}: {len(book.loans)} loans,"
        f" {len(book.pledges)} pledges, {len(book.prices)} prices",
        file=out,
    )
    return 0


def _loan_json(loan: Loan, book: LoanBook) -> dict[str, object]:
    return {
        "loan_id": loan.loan_id,
        "borrower": loan.borrower,
        "warehouse_id": loan.warehouse,
        "currency": loan.currency,
        "outstanding": str(loan.outstanding),
        "start": loan.start.isoformat(),
        "end": loan.end.isoformat(),
        "pledge_type": loan.pledge_type.value,
        "advance_rate": str(loan.advance_rate),
        "warning_ratio": str(loan.warning_ratio),
        "liquidation_ratio": str(loan.liquidation_ratio),
        "min_value": str(loan.min_value),
        "pledges": sum(1 for p in book.pledges if p.loan_id == loan.loan_id),
    }


def _list(args: argparse.Namespace, out: TextIO) -> int:
    db = _open(args)
    try:
        book = load_book(db, args.version)
        since = next(v.valid_from_ms for v in list_versions(db) if v.version == book.version)
    finally:
        db.close()
    rows = [_loan_json(loan, book) for loan in book.loans]
    if args.json:
        document = {"version": book.version, "valid_from_ms": since, "loans": rows}
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
        return 0
    print(f"loan book version {book.version} (valid from {since} ms)", file=out)
    for row in rows:
        print(
            f"{row['loan_id']}  {row['borrower']}  {row['warehouse_id']}  {row['pledge_type']}"
            f"  {row['currency']} {row['outstanding']}  {row['start']}..{row['end']}"
            f"  pledges={row['pledges']}",
            file=out,
        )
    return 0


def _repay(args: argparse.Namespace, out: TextIO) -> int:
    try:
        amount = parse_amount(args.outstanding)
    except LoanBookError as exc:
        raise ConfigError("--outstanding", exc.problems) from None
    db = _open(args)
    try:
        before = load_book(db).loan(args.loan)
        version = repay(db, args.loan, amount, _now_ms())
    finally:
        db.close()
    was = "?" if before is None else f"{before.currency} {before.outstanding}"
    print(f"loan {args.loan}: outstanding {was} -> {amount} (version {version})", file=out)
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    db = _open(args)
    try:
        book = load_book(db, args.version)
    finally:
        db.close()
    loan = book.loan(args.loan_id)
    if loan is None:
        raise LoanBookError([f"loan {args.loan_id!r} is not in loan book version {book.version}"])
    pledges = [p for p in book.pledges if p.loan_id == loan.loan_id]
    prices = {}
    for sku in dict.fromkeys(p.sku for p in pledges):
        latest = max((p for p in book.prices if p.sku == sku), key=lambda p: p.date, default=None)
        prices[sku] = None if latest is None else [latest.date.isoformat(), str(latest.unit_price)]
    document = {
        "version": book.version,
        "loan": _loan_json(loan, book),
        "pledges": [{"lot": p.lot, "sku": p.sku, "qty": p.qty} for p in pledges],
        "latest_prices": prices,
    }
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True), file=out)
        return 0
    for name, value in _loan_json(loan, book).items():
        print(f"{name:18} {value}", file=out)
    for p in pledges:
        print(f"pledge  lot={p.lot or '(any)'}  sku={p.sku}  qty={p.qty}", file=out)
    for sku, price in prices.items():
        print(f"price   {sku}: {'none' if price is None else ' '.join(price)}", file=out)
    return 0
