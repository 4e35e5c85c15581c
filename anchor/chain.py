"""Per-device chain check: every device's events must form one gapless, unforked hash chain.

Run inside the transaction that stores each new event:

- **FORK**: another stored event has the same device and ``seq`` (the gateway signed two
  different events for one position — equivocation, or a reset that re-used sequence numbers).
- **TAMPER**: the event's ``prev`` is not the id of the stored event ``seq - 1``, or the stored
  event ``seq + 1`` does not point at this one.
- **GAP**: ``gap_scan`` (run periodically) records a missing ``seq`` range that stayed missing
  for longer than the gap timeout; when it is filled later the record is marked resolved.

Late and reordered events are simply accepted: ``chain_heads`` tracks, per device, the highest
``complete_seq`` up to which every event is present and correctly linked.

Chain state is only read and written under ``CHAIN_LOCK_ID`` (``Ingestor.process`` and
``gap_scan`` take it), so with several workers on PostgreSQL each check sees every event
committed before it.
"""

from __future__ import annotations

import enum

from anchor.store.db import CHAIN_LOCK_ID, Tx
from pledgewatch.events import ZERO_HASH, SignedEvent


class ChainRecord(enum.Enum):
    GAP = "GAP"
    FORK = "FORK"
    TAMPER = "TAMPER"


def record(
    tx: Tx,
    kind: ChainRecord,
    signed: SignedEvent,
    seq_from: int,
    seq_to: int,
    event_ids: list[str],
    detail: str,
    now_ms: int,
) -> None:
    e = signed.event
    tx.execute(
        "INSERT INTO chain_records (kind, warehouse, gateway, device, seq_from, seq_to, "
        "event_ids, detail, created_ms, resolved_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
        (
            kind.value,
            e.warehouse,
            e.gateway,
            e.device,
            seq_from,
            seq_to,
            ",".join(event_ids),
            detail,
            now_ms,
        ),
    )


def check_chain(tx: Tx, signed: SignedEvent, now_ms: int) -> None:
    e = signed.event
    event_id = signed.event_id
    if _extends_complete_chain(tx, signed):
        return
    same = tx.all(
        "SELECT event_id FROM events WHERE gateway = ? AND device = ? AND seq = ? "
        "AND event_id <> ?",
        (e.gateway, e.device, e.seq, event_id),
    )
    if same:
        record(
            tx,
            ChainRecord.FORK,
            signed,
            e.seq,
            e.seq,
            [same[0][0], event_id],
            f"two different events for seq {e.seq}",
            now_ms,
        )
    if e.seq > 1:
        before = tx.all(
            "SELECT event_id FROM events WHERE gateway = ? AND device = ? AND seq = ?",
            (e.gateway, e.device, e.seq - 1),
        )
        if before and e.prev not in {row[0] for row in before}:
            record(
                tx,
                ChainRecord.TAMPER,
                signed,
                e.seq - 1,
                e.seq,
                [before[0][0], event_id],
                f"prev of seq {e.seq} is not the stored seq {e.seq - 1}",
                now_ms,
            )
    after = tx.all(
        "SELECT event_id, prev FROM events WHERE gateway = ? AND device = ? AND seq = ?",
        (e.gateway, e.device, e.seq + 1),
    )
    for next_id, next_prev in after:
        if next_prev != event_id and not same:
            record(
                tx,
                ChainRecord.TAMPER,
                signed,
                e.seq,
                e.seq + 1,
                [event_id, next_id],
                f"prev of stored seq {e.seq + 1} is not this seq {e.seq}",
                now_ms,
            )
    _advance_head(tx, signed, now_ms)


def _extends_complete_chain(tx: Tx, signed: SignedEvent) -> bool:
    """The common case, in two statements: the device's chain is complete (no holes, nothing
    beyond it) and this event is the next link. Then no other event can share its seq or
    follow it, and its prev is the stored seq - 1: nothing to record, just move the head."""
    e = signed.event
    row = tx.one(
        "SELECT complete_seq, complete_id, max_seq FROM chain_heads WHERE gateway = ? AND "
        "device = ?",
        (e.gateway, e.device),
    )
    complete, complete_id, max_seq = row if row else (0, ZERO_HASH, 0)
    if not (max_seq == complete and e.seq == complete + 1 and e.prev == complete_id):
        return False
    tx.execute(
        "INSERT INTO chain_heads (gateway, device, warehouse, complete_seq, complete_id, max_seq,"
        " gap_since_ms) VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (gateway, device) DO UPDATE "
        "SET complete_seq = excluded.complete_seq, complete_id = excluded.complete_id, "
        "max_seq = excluded.max_seq, gap_since_ms = NULL",
        (e.gateway, e.device, e.warehouse, e.seq, signed.event_id, e.seq),
    )
    return True


def _advance_head(tx: Tx, signed: SignedEvent, now_ms: int) -> None:
    e = signed.event
    row = tx.one(
        "SELECT complete_seq, complete_id, max_seq, gap_since_ms FROM chain_heads "
        "WHERE gateway = ? AND device = ?",
        (e.gateway, e.device),
    )
    complete, complete_id, max_seq, gap_since = row if row else (0, ZERO_HASH, 0, None)
    max_seq = max(max_seq, e.seq)
    while True:
        nxt = tx.one(
            "SELECT event_id FROM events WHERE gateway = ? AND device = ? AND seq = ? "
            "AND prev = ? ORDER BY event_id LIMIT 1",
            (e.gateway, e.device, complete + 1, complete_id),
        )
        if nxt is None:
            break
        complete, complete_id = complete + 1, nxt[0]
    gap_since = (gap_since if gap_since is not None else now_ms) if max_seq > complete else None
    _resolve_filled_gaps(tx, signed, now_ms)
    tx.execute(
        "INSERT INTO chain_heads (gateway, device, warehouse, complete_seq, complete_id, max_seq,"
        " gap_since_ms) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, device) DO UPDATE SET "
        "complete_seq = excluded.complete_seq, complete_id = excluded.complete_id, "
        "max_seq = excluded.max_seq, gap_since_ms = excluded.gap_since_ms",
        (e.gateway, e.device, e.warehouse, complete, complete_id, max_seq, gap_since),
    )


def _resolve_filled_gaps(tx: Tx, signed: SignedEvent, now_ms: int) -> None:
    """A GAP record is resolved (late delivery) once every seq of its range is present."""
    e = signed.event
    for record_id, start, end in tx.all(
        "SELECT id, seq_from, seq_to FROM chain_records WHERE kind = 'GAP' AND gateway = ? AND "
        "device = ? AND resolved_ms IS NULL AND seq_from <= ? AND seq_to >= ?",
        (e.gateway, e.device, e.seq, e.seq),
    ):
        (have,) = tx.one(
            "SELECT COUNT(DISTINCT seq) FROM events WHERE gateway = ? AND "
            "device = ? AND seq >= ? AND seq <= ?",
            (e.gateway, e.device, start, end),
        )
        if have == end - start + 1:
            tx.execute("UPDATE chain_records SET resolved_ms = ? WHERE id = ?", (now_ms, record_id))


def gap_scan(tx: Tx, now_ms: int, timeout_ms: int) -> int:
    """Record a GAP for every missing seq range that outlived the timeout; returns how many.

    Each device's ranges are found between its complete prefix and its highest seq, so two
    holes in one chain are two records.
    """
    tx.lock(CHAIN_LOCK_ID)  # not while an ingest batch is filling the gap
    rows = tx.all(
        "SELECT gateway, device, warehouse, complete_seq FROM chain_heads "
        "WHERE gap_since_ms IS NOT NULL AND gap_since_ms <= ?",
        (now_ms - timeout_ms,),
    )
    made = 0
    for gateway, device, warehouse, complete in rows:
        present = [
            r[0]
            for r in tx.all(
                "SELECT DISTINCT seq FROM events WHERE gateway = ? AND device = ? AND seq > ? "
                "ORDER BY seq",
                (gateway, device, complete),
            )
        ]
        expected = complete + 1
        for seq in present:
            if seq > expected:
                made += _record_gap(
                    tx, warehouse, gateway, device, expected, seq - 1, now_ms, timeout_ms
                )
            expected = seq + 1
    return made


def _record_gap(
    tx: Tx,
    warehouse: str,
    gateway: str,
    device: str,
    start: int,
    end: int,
    now_ms: int,
    timeout_ms: int,
) -> int:
    if tx.one(
        "SELECT id FROM chain_records WHERE kind = 'GAP' AND gateway = ? AND device = ? "
        "AND seq_from = ?",
        (gateway, device, start),
    ):
        return 0
    tx.execute(
        "INSERT INTO chain_records (kind, warehouse, gateway, device, seq_from, seq_to, "
        "event_ids, detail, created_ms, resolved_ms) VALUES ('GAP', ?, ?, ?, ?, ?, '', ?, ?, "
        "NULL)",
        (
            warehouse,
            gateway,
            device,
            start,
            end,
            f"seq {start}..{end} missing for more than {timeout_ms // 1000}s",
            now_ms,
        ),
    )
    return 1
