"""``pledgewatch anchor …``: run a worker, manage gateway keys, inspect quarantine and records.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration, key or arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor import keyfile, registry
from anchor.alerts import config as alerts_config
from anchor.alerts import deliver
from anchor.errors import AnchorError, ConfigError
from anchor.metrics import open_writer
from anchor.publish import Publisher
from anchor.reconcile import engine as reconcile_engine
from anchor.reconcile.integrity import CHAIN_COLUMNS
from anchor.service import AnchorWorker, now_ms
from anchor.store.db import Database
from anchor.store.schema import open_store
from pledgewatch.canonical import MAX_SAFE_INT
from pledgewatch.errors import PledgewatchError
from pledgewatch.process import handle_signals
from pledgewatch.topics import check_id

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="anchor_command", required=True)
    keygen = sub.add_parser("keygen", help="create the anchor's Ed25519 key (mode 0600)")
    keygen.add_argument("--key", type=Path, required=True)
    for name, text in (
        ("run", "run one anchor worker until SIGTERM/SIGINT"),
        ("init", "create or migrate the store"),
        ("keys", "list enrolled gateway keys"),
        ("status", "log size, checkpoints, witness and ledger state"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", type=Path, required=True)
        p.add_argument("--json", action="store_true")
    enrol = sub.add_parser("enrol", help="enrol a gateway key (logged as a key leaf)")
    enrol.add_argument("--config", type=Path, required=True)
    enrol.add_argument("--warehouse", required=True)
    enrol.add_argument("--gateway", required=True)
    enrol.add_argument("--public-key", required=True, help="64 hex digits")
    enrol.add_argument("--valid-from-ms", type=int, default=0)
    revoke = sub.add_parser("revoke", help="revoke a gateway key from now (or --at-ms)")
    revoke.add_argument("--config", type=Path, required=True)
    revoke.add_argument("--key-id", required=True)
    revoke.add_argument("--at-ms", type=int)
    quarantine = sub.add_parser("quarantine", help="refused messages, by reason")
    quarantine.add_argument("--config", type=Path, required=True)
    quarantine.add_argument("--limit", type=int, default=20)
    quarantine.add_argument("--json", action="store_true")
    records = sub.add_parser("records", help="chain records: GAP, FORK, TAMPER")
    records.add_argument("--config", type=Path, required=True)
    records.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {
        "keygen": _keygen,
        "run": _run,
        "init": _init,
        "keys": _keys,
        "enrol": _enrol,
        "revoke": _revoke,
        "quarantine": _quarantine,
        "records": _records,
        "status": _status,
    }
    try:
        return handlers[args.anchor_command](args, out)
    except (ConfigError, keyfile.KeyFileError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    key = keyfile.generate(args.key)
    print(
        f"key file:   {args.key}\nkey id:     {key.key_id}\npublic key: {key.public_key.hex()}",
        file=out,
    )
    return 0


def _open(args: argparse.Namespace) -> tuple[anchor_config.AnchorConfig, Database]:
    config = anchor_config.load(args.config)
    return config, open_store(config.anchor.store)


def _init(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    db.close()
    print("store ready", file=out)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    # Everything a bad file can break is read before the store is created or migrated.
    config = anchor_config.load(args.config)
    alerting = alerts_config.load(args.config)
    key = keyfile.load(config.anchor.key_file)
    config, db = _open(args)
    db.close()
    stop = threading.Event()
    handle_signals(stop)
    writer = None
    if config.metrics is not None:
        writer = open_writer(config.metrics, config.anchor.worker)
        writer.start()
    publisher = Publisher(config, key)
    publisher_thread = threading.Thread(target=publisher.run, args=(stop,), daemon=True)
    publisher_thread.start()
    threads = [publisher_thread]
    nudge = threading.Event()  # reconciler -> deliverer: an alert changed, deliver now
    if config.reconcile.enabled:
        recon = config.reconcile
        reconciler = threading.Thread(
            target=reconcile_engine.serve,
            args=(
                config.anchor.store,
                recon.state,
                recon.settings,
                config.bank.release_public_key,
                recon.every_ms,
                stop,
                writer,
                nudge,
            ),
            daemon=True,
        )
        reconciler.start()
        threads.append(reconciler)
    if alerting.webhooks:
        deliverer = threading.Thread(
            target=deliver.serve, args=(alerting, stop, nudge), daemon=True
        )
        deliverer.start()
        threads.append(deliverer)
    log.info(
        "anchor worker %s for log %s (key %s)",
        config.anchor.worker,
        config.anchor.origin,
        key.key_id,
    )
    AnchorWorker(config, key, writer).run(stop)
    for thread in threads:
        thread.join(timeout=30)
    if writer is not None:
        writer.close()
    return 0


def _keys(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    keys = registry.list_keys(db)
    db.close()
    rows = [
        {
            "key_id": k.key_id,
            "warehouse": k.warehouse,
            "gateway": k.gateway,
            "public_key": k.public_key.hex(),
            "valid_from_ms": k.valid_from_ms,
            "valid_until_ms": k.valid_until_ms,
        }
        for k in keys
    ]
    _print_rows(out, rows, args.json)
    return 0


def _enrol(args: argparse.Namespace, out: TextIO) -> int:
    try:
        public = bytes.fromhex(args.public_key)
    except ValueError:
        public = b""
    if len(public) != 32:
        raise ConfigError("--public-key", ["want 64 hex digits (the gateway keygen output)"])
    # Checked before the store opens: an enrolment is a permanent leaf of the log.
    problems = [
        *_id_problem("--warehouse", args.warehouse),
        *_id_problem("--gateway", args.gateway),
        *_ms_problem("--valid-from-ms", args.valid_from_ms),
    ]
    if problems:
        raise ConfigError("anchor enrol", problems)
    _, db = _open(args)
    record = registry.enrol(
        db, args.warehouse, args.gateway, public, now_ms=now_ms(), valid_from_ms=args.valid_from_ms
    )
    db.close()
    print(f"enrolled key {record.key_id} for {args.warehouse}/{args.gateway}", file=out)
    return 0


def _revoke(args: argparse.Namespace, out: TextIO) -> int:
    problems = _ms_problem("--at-ms", args.at_ms) if args.at_ms is not None else []
    if problems:
        raise ConfigError("anchor revoke", problems)
    _, db = _open(args)
    record = registry.revoke(db, args.key_id, now_ms=now_ms(), valid_until_ms=args.at_ms)
    db.close()
    print(f"revoked key {record.key_id} from {record.valid_until_ms}", file=out)
    return 0


def _id_problem(flag: str, value: str) -> list[str]:
    try:
        check_id(flag, value)
    except PledgewatchError as exc:
        return [str(exc)]
    return []


def _ms_problem(flag: str, value: int) -> list[str]:
    if not 0 <= value <= MAX_SAFE_INT:
        shown = value if abs(value) < 10**20 else f"a {value.bit_length()}-bit integer"
        return [f"{flag}: got {shown}, want milliseconds 0..2**53-1"]
    return []


def _quarantine(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    tx = db.read()
    counts = tx.all("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason ORDER BY reason")
    rows = tx.all(
        "SELECT id, received_ms, topic, reason, detail, event_id, raw FROM quarantine "
        "ORDER BY id DESC LIMIT ?",
        (args.limit,),
    )
    db.close()
    if args.json:
        print(
            json.dumps(
                {
                    "counts": dict(counts),
                    "latest": [
                        {
                            "id": r[0],
                            "received_ms": r[1],
                            "topic": r[2],
                            "reason": r[3],
                            "detail": r[4],
                            "event_id": r[5],
                            "raw_hex": bytes(r[6])[:256].hex(),
                        }
                        for r in rows
                    ],
                },
                indent=2,
            ),
            file=out,
        )
        return 0
    for reason, count in counts:
        print(f"{reason:24} {count}", file=out)
    for r in rows:
        print(f"#{r[0]} {r[3]} on {r[2]}: {r[4]}", file=out)
    return 0


def _records(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    rows = db.read().all(
        f"SELECT {', '.join(CHAIN_COLUMNS)} FROM chain_records ORDER BY id"  # noqa: S608
    )
    db.close()
    _print_rows(out, [dict(zip(CHAIN_COLUMNS, r, strict=True)) for r in rows], args.json)
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    _, db = _open(args)
    tx = db.read()
    size = tx.one("SELECT size FROM log_state WHERE id = 1")[0]
    events = tx.one(
        "SELECT COUNT(*), SUM(CASE WHEN leaf_index IS NULL THEN 1 ELSE 0 END) FROM events"
    )
    last = tx.one(
        "SELECT size, created_ms, witnessed_ms, anchored_ms FROM checkpoints "
        "ORDER BY size DESC LIMIT 1"
    )
    witnessed = tx.one("SELECT MAX(size) FROM checkpoints WHERE cosigned_note IS NOT NULL")
    anchored = tx.one("SELECT MAX(size) FROM checkpoints WHERE ledger_receipt IS NOT NULL")
    quarantined = tx.one("SELECT COUNT(*) FROM quarantine")[0]
    db.close()
    now = time.time_ns() // 1_000_000
    report = {
        "log_size": size,
        "events": events[0],
        "unsequenced": events[1] or 0,
        "quarantined": quarantined,
        "latest_checkpoint": None if last is None else last[0],
        "checkpoint_age_s": None if last is None else round((now - last[1]) / 1000, 3),
        "witnessed_size": witnessed[0],
        "anchored_size": anchored[0],
    }
    _print_rows(out, [report], args.json)
    return 0


def _print_rows(out: TextIO, rows: Sequence[Mapping[str, object]], as_json: bool) -> None:
    if as_json:
        print(
            json.dumps(
                rows if len(rows) != 1 or "log_size" not in rows[0] else rows[0],
                indent=2,
                sort_keys=True,
            ),
            file=out,
        )
        return
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()), file=out)
