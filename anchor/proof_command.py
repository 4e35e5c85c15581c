"""``pledgewatch proof EVENT_ID -o FILE --config anchor.toml``: write an event's proof file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor.errors import AnchorError, ConfigError
from anchor.proofs import build_event_proof
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_id", help="64 hex digits")
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True, help="the anchor's config")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = anchor_config.load(args.config)
        db = Database(config.anchor.store)
        db.open()
        try:
            data = build_event_proof(db, args.event_id)
        finally:
            db.close()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)", file=out)
    return 0
