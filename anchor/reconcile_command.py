"""``pledgewatch reconcile``: the rules at a moment, over the store or over an exported log.

    pledgewatch reconcile --config anchor.toml --at TIME [--format json|table]
    pledgewatch reconcile --events signed-events.jsonl --keys gateways.json --loans loans.csv
        --pledges pledges.csv --prices prices.csv [--releases releases.jsonl --bank-key HEX]
        [--skus skus.csv] --at TIME [--format json|table]

TIME is RFC 3339 (``2026-11-28T12:00:00Z``) or milliseconds since the epoch. Nothing is
written and no alert is raised: this is the batch view (the live reconciler raises alerts).
Exit 0 with no condition, 1 with conditions (so scripts can gate on it), 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor.errors import AnchorError, ConfigError
from anchor.loans import load_csv
from anchor.reconcile.batch import events_frame, snapshot_from_frame
from anchor.reconcile.conditions import Condition
from anchor.reconcile.engine import Inputs, reconcile_store, verified_tokens
from anchor.reconcile.offline import bad_signatures, chain_records, verified_events
from anchor.reconcile.rules import evaluate
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.snapshot import StateConfig
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError

DEFAULT_GAP_TIMEOUT_MS = 300_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", required=True, help="RFC 3339 time or epoch milliseconds")
    parser.add_argument("--format", choices=("json", "table"), default="table")
    parser.add_argument("--config", type=Path, help="reconcile the anchor's store")
    for name in ("events", "keys", "loans", "pledges", "prices", "releases", "skus", "quarantine"):
        parser.add_argument(f"--{name}", type=Path)
    parser.add_argument("--bank-key", help="the bank's release public key (64 hex)")
    parser.add_argument("--gap-timeout-s", type=int, default=DEFAULT_GAP_TIMEOUT_MS // 1000)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        at_ms = parse_time(args.at)
        conditions = _store(args, at_ms) if args.config else _offline(args, at_ms)
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    _print(out, conditions, args.format)
    return 1 if conditions else 0


def parse_time(text: str) -> int:
    if text.isdigit():
        return int(text)
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"--at {text!r}: give a time zone (e.g. Z)")
    return int(moment.timestamp() * 1000)


def _store(args: argparse.Namespace, at_ms: int) -> list[Condition]:
    config = anchor_config.load(args.config)
    db = Database(config.anchor.store)
    db.open()
    try:
        recon = config.reconcile
        return reconcile_store(
            db, at_ms, recon.state, recon.settings, config.bank.release_public_key
        )
    finally:
        db.close()


def _offline(args: argparse.Namespace, at_ms: int) -> list[Condition]:
    missing = [
        f"--{n}"
        for n in ("events", "keys", "loans", "pledges", "prices")
        if getattr(args, n) is None
    ]
    if missing:
        raise ConfigError("reconcile", [f"offline mode needs {', '.join(missing)} (or --config)"])
    events = [s for s in verified_events(args.events, args.keys) if s.event.ts_ms <= at_ms]
    book = load_csv(args.loans, args.pledges, args.prices)
    bank_key = bytes.fromhex(args.bank_key) if args.bank_key else None
    wires = (
        []
        if args.releases is None
        else [line for line in args.releases.read_bytes().split(b"\n") if line]
    )
    state = StateConfig(unit_grams=_unit_grams(args.skus) if args.skus else {})
    frame = events_frame((s.event_id, s.event) for s in events)
    snapshot = snapshot_from_frame(frame, at_ms, state)
    inputs = Inputs(
        book,
        verified_tokens(wires, bank_key),
        tuple(chain_records(events, at_ms, args.gap_timeout_s * 1000)),
        {} if args.quarantine is None else bad_signatures(args.quarantine, args.keys, at_ms),
    )
    return evaluate(
        snapshot,
        inputs.book,
        inputs.tokens,
        inputs.chain_records,
        RuleSettings(),
        at_ms,
        bad_signatures=inputs.bad_signatures,
    )


def _unit_grams(path: Path) -> dict[str, int]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    problems = [
        f"{path.name}:{n + 2}: want sku,unit_grams with grams > 0"
        for n, r in enumerate(rows)
        if not (r.get("sku") and (r.get("unit_grams") or "").isdigit())
    ]
    if problems:
        raise ConfigError(str(path), problems)
    return {r["sku"]: int(r["unit_grams"]) for r in rows}


def condition_dict(c: Condition) -> dict[str, object]:
    return {
        "rule": c.rule.value,
        "severity": c.severity.name,
        "category": c.rule.category.value,
        "fingerprint": c.fingerprint,
        "warehouse": c.warehouse,
        "loan_id": c.loan_id,
        "lot": c.lot,
        "device": c.device,
        "subject": c.subject,
        "message": c.message,
        "evidence": list(c.evidence),
        "observed_ms": c.observed_ms,
    }


def _print(out: TextIO, conditions: list[Condition], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([condition_dict(c) for c in conditions], indent=2), file=out)
        return
    for c in conditions:
        print(f"{c.severity.name:8} {c.rule.value:22} {c.warehouse:10} {c.message}", file=out)
    print(f"{len(conditions)} condition(s)", file=out)
