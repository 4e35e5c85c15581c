"""``pledgewatch export --config anchor.toml -o DIR``: write the log as checkable files."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor.errors import AnchorError, ConfigError
from anchor.export import export
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the anchor's config")
    parser.add_argument("-o", "--output", type=Path, required=True, help="folder to write")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = anchor_config.load(args.config)
        db = Database(config.anchor.store)
        db.open()
        try:
            summary = export(db, args.output)
        finally:
            db.close()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    print(
        f"exported {summary.events} events and {summary.keys} key records = log size "
        f"{summary.log_size} to {args.output}",
        file=out,
    )
    return 0
