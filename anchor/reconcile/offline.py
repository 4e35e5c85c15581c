"""Reconciliation on an exported log, with nothing of the anchor's database.

The bank re-runs the rules on its own copy (``pledgewatch export`` files + its loan-book
CSVs). Everything is re-derived from signed data: every event's signature is checked against
the exported key records (enrolled for its gateway, valid at its ``ts_ms``), and the chain
records are recomputed from the events themselves:

- FORK: two different events for one device and ``seq``;
- TAMPER: an event whose ``prev`` is not the id of the device's event ``seq - 1``;
- GAP: a missing ``seq`` range below the device's highest ``seq``, once the event after it is
  older than the gap timeout at the reconciliation time (the live anchor uses arrival time;
  for a settled log both agree).

Bad signatures (the TAMPER rule's count per warehouse) come from the export's
``quarantine.jsonl``, which the checkpoint does not cover; so the anchor's ``reason`` is not
trusted: a refused message counts only if it passes the anchor's ingest steps 1-4 (an events
topic, a canonical envelope, the topic's warehouse and gateway, a key enrolled for that
gateway and valid at ``ts_ms``) and then fails step 5, the signature — re-checked here.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from anchor.chain import ChainRecord
from anchor.errors import AnchorError
from anchor.export import read_events, read_keys
from anchor.reconcile.integrity import ChainRecordRow
from pledgewatch import canonical
from pledgewatch.errors import PledgewatchError, SignatureError
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import KeyAction, KeyRecord
from pledgewatch.signing import verify_event
from pledgewatch.topics import parse_topic


class ExportError(AnchorError):
    """The exported files are unreadable or contain an event that does not verify."""


def verified_events(events_path: Path, keys_path: Path) -> list[SignedEvent]:
    records = [record for _, record in read_keys(keys_path)]
    windows = _windows(records)
    out = []
    for number, wire in enumerate(read_events(events_path), start=1):
        try:
            signed = SignedEvent.from_wire(wire)
            key = windows.get(signed.key_id)
            if key is None:
                raise ExportError(f"key {signed.key_id} is not in {keys_path.name}")
            e = signed.event
            if (key.warehouse, key.gateway) != (e.warehouse, e.gateway) or not (
                key.valid_from_ms <= e.ts_ms
                and (key.valid_until_ms is None or e.ts_ms < key.valid_until_ms)
            ):
                raise ExportError(f"key {signed.key_id} was not valid for this event")
            verify_event(signed, key.public_key)
        except PledgewatchError as exc:
            raise ExportError(f"{events_path.name}:{number}: {exc}") from None
        out.append(signed)
    return out


def bad_signatures(quarantine_path: Path, keys_path: Path, at_ms: int) -> dict[str, int]:
    """Per warehouse, the refused messages received by ``at_ms`` whose signature is bad."""
    windows = _windows([record for _, record in read_keys(keys_path)])
    counts: dict[str, int] = defaultdict(int)
    for number, line in enumerate(quarantine_path.read_bytes().split(b"\n"), start=1):
        if not line:
            continue
        try:
            row = canonical.decode(line)
            if not isinstance(row, dict) or {"raw", "received_ms", "topic"} - set(row):
                raise ExportError("want raw, received_ms and topic")
            raw = base64.b64decode(str(row["raw"]), validate=True)
        except (PledgewatchError, binascii.Error) as exc:
            raise ExportError(f"{quarantine_path.name}:{number}: {exc}") from None
        if not isinstance(row["received_ms"], int) or row["received_ms"] > at_ms:
            continue
        warehouse = _bad_signature_warehouse(str(row["topic"]), raw, windows)
        if warehouse is not None:
            counts[warehouse] += 1
    return dict(counts)


def _bad_signature_warehouse(topic: str, raw: bytes, windows: dict[str, KeyRecord]) -> str | None:
    try:
        where = parse_topic(topic)
        signed = SignedEvent.from_wire(raw)
    except PledgewatchError:
        return None  # refused before the signature step: not a bad signature
    e, key = signed.event, windows.get(signed.key_id)
    if (
        where.channel != "events"
        or (e.warehouse, e.gateway) != (where.warehouse, where.gateway)
        or key is None
        or (key.warehouse, key.gateway) != (e.warehouse, e.gateway)
        or e.ts_ms < key.valid_from_ms
        or (key.valid_until_ms is not None and e.ts_ms >= key.valid_until_ms)
    ):
        return None
    try:
        verify_event(signed, key.public_key)
    except SignatureError:
        return e.warehouse
    return None


def _windows(records: Sequence[KeyRecord]) -> dict[str, KeyRecord]:
    """Each key's final validity: its enrolment, with a later revocation's ``valid_until``."""
    out: dict[str, KeyRecord] = {}
    for record in records:
        if record.action is KeyAction.ENROL:
            out[record.key_id] = record
        elif record.key_id in out:
            enrolled = out[record.key_id]
            out[record.key_id] = KeyRecord(
                enrolled.action,
                enrolled.warehouse,
                enrolled.gateway,
                enrolled.public_key,
                enrolled.valid_from_ms,
                record.valid_until_ms,
                enrolled.at_ms,
            )
    return out


def chain_records(
    events: Sequence[SignedEvent], at_ms: int, gap_timeout_ms: int
) -> list[ChainRecordRow]:
    by_device: dict[tuple[str, str, str], dict[int, list[SignedEvent]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for signed in events:
        e = signed.event
        by_device[(e.warehouse, e.gateway, e.device)][e.seq].append(signed)
    rows: list[ChainRecordRow] = []
    for where, seqs in sorted(by_device.items()):
        rows.extend(_device_findings(where, seqs, at_ms, gap_timeout_ms))
    return [replace(row, id=n) for n, row in enumerate(rows, start=1)]


def _device_findings(
    where: tuple[str, str, str], seqs: dict[int, list[SignedEvent]], at_ms: int, gap_timeout_ms: int
) -> list[ChainRecordRow]:
    def row(
        kind: ChainRecord, start: int, end: int, ids: tuple[str, ...], when: int, detail: str
    ) -> ChainRecordRow:
        return ChainRecordRow(0, kind, *where, start, end, ids, detail, when, None)

    out: list[ChainRecordRow] = []
    expected = 1
    for seq in sorted(seqs):
        here = seqs[seq]
        ids = sorted({s.event_id for s in here})
        if len(ids) > 1:
            out.append(
                row(
                    ChainRecord.FORK,
                    seq,
                    seq,
                    tuple(ids[:2]),
                    max(s.event.ts_ms for s in here),
                    f"two different events for seq {seq}",
                )
            )
        before = {s.event_id for s in seqs.get(seq - 1, [])}
        if before and any(s.event.prev not in before for s in here):
            out.append(
                row(
                    ChainRecord.TAMPER,
                    seq - 1,
                    seq,
                    (min(before), ids[0]),
                    here[0].event.ts_ms,
                    f"prev of seq {seq} is not the stored seq {seq - 1}",
                )
            )
        if seq > expected:
            revealed = min(s.event.ts_ms for s in here) + gap_timeout_ms
            if revealed <= at_ms:
                out.append(
                    row(
                        ChainRecord.GAP,
                        expected,
                        seq - 1,
                        (),
                        revealed,
                        f"seq {expected}..{seq - 1} missing from the export",
                    )
                )
        expected = seq + 1
    return out
