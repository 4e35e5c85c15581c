"""What the demo shows while it runs: counts read from the anchor's store, read-only.

The demo reads the anchor's SQLite file the way an operator's monitoring would (stdlib
``sqlite3``, ``mode=ro``), so the gateway package never imports the anchor; the final figures
come from ``pledgewatch anchor status --json``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class StoreCounts:
    events: int
    sequenced: int
    opening: int  # COUNT events of the opening stocktake stored
    checkpoints: int
    witnessed_size: int
    anchored_size: int
    log_size: int


EMPTY = StoreCounts(0, 0, 0, 0, 0, 0, 0)
HOUR_MS = 3_600_000


def read_counts(db: Path, start_ms: int) -> StoreCounts:
    """Counts from the anchor's store; zeros while it does not exist or is busy. The opening
    stocktake is every COUNT signed in the first hour after ``start_ms`` (the next is a day
    later)."""
    if not db.exists():
        return EMPTY
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    except sqlite3.Error:
        return EMPTY
    try:
        events, sequenced, opening = conn.execute(
            "SELECT COUNT(*), COUNT(leaf_index), COALESCE(SUM(CASE WHEN kind = 'COUNT' "
            "AND ts_ms < ? THEN 1 ELSE 0 END), 0) FROM events",
            (start_ms + HOUR_MS,),
        ).fetchone()
        checkpoints, witnessed, anchored = conn.execute(
            "SELECT COUNT(*), "
            "COALESCE(MAX(CASE WHEN cosigned_note IS NOT NULL THEN size END), 0), "
            "COALESCE(MAX(CASE WHEN ledger_receipt IS NOT NULL THEN size END), 0) "
            "FROM checkpoints"
        ).fetchone()
        row = conn.execute("SELECT size FROM log_state WHERE id = 1").fetchone()
    except sqlite3.Error:
        return EMPTY
    finally:
        conn.close()
    return StoreCounts(
        int(events),
        int(sequenced),
        int(opening),
        int(checkpoints),
        int(witnessed),
        int(anchored),
        0 if row is None else int(row[0]),
    )
