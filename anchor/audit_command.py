"""``pledgewatch audit --config anchor.toml [--no-ledger] [--json]``: exit 1 on any finding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

from anchor import config as anchor_config
from anchor import keyfile
from anchor.audit import audit
from anchor.errors import AnchorError, ConfigError
from anchor.ledger import open_ledger
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="the anchor's config")
    parser.add_argument("--no-ledger", action="store_true", help="skip re-reading the ledger")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        config = anchor_config.load(args.config)
        key = keyfile.load(config.anchor.key_file)
        db = Database(config.anchor.store)
        db.open()
        ledger = None if args.no_ledger else open_ledger(config.ledger.url)
        try:
            report = audit(db, config.anchor.origin, key.public_key, ledger)
        finally:
            db.close()
            if ledger is not None:
                ledger.close()
    except ConfigError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    if args.json:
        print(
            json.dumps(
                {
                    "log_size": report.log_size,
                    "events": report.events,
                    "clean": report.clean,
                    "key_records": report.key_records,
                    "checkpoints": report.checkpoints,
                    "anchored": report.anchored,
                    "findings": [
                        {"finding": f.finding.value, "where": f.where, "detail": f.detail}
                        for f in report.findings
                    ],
                },
                indent=2,
            ),
            file=out,
        )
    else:
        print(
            f"log size {report.log_size}: {report.events} events, {report.key_records} key "
            f"records, {report.checkpoints} checkpoints ({report.anchored} anchored)",
            file=out,
        )
        for f in report.findings:
            print(f"FINDING {f.finding.value}: {f.where}: {f.detail}", file=out)
        print("audit clean" if report.clean else f"{len(report.findings)} finding(s)", file=out)
    return 0 if report.clean else 1
