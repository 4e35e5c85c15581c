"""``pledgewatch export``: the log as files a bank can re-check and re-reconcile on its own.

Files written to the output folder (format version 1, see docs/PROTOCOL.md section 12):

- ``signed-events.jsonl`` — one line per logged event: its exact wire bytes (the signed
  envelope, section 5), in log order.
- ``gateways.json`` — canonical JSON ``{"keys": [{"leaf_index": n, "record": <key record>},
  …], "v": 1}``: every key enrolment and revocation with its log position.
- ``releases.jsonl`` — the bank's signed release tokens (pledgewatch.release), one per line.
- ``quarantine.jsonl`` — every message the anchor refused, in arrival order, one canonical JSON
  object per line: ``{"detail", "raw" (base64 of the exact payload), "reason", "received_ms",
  "topic"}``. Not covered by the checkpoint (a refused message is not in the log): the offline
  reconciler re-verifies the ones it counts (``anchor.reconcile.offline.bad_signatures``).
- ``manifest.json`` — canonical JSON ``{"checkpoint": <signed note text>, "files": {name:
  sha256 hex}, "log_size": n, "origin": …, "v": 1}``: the newest checkpoint (cosigned when the
  witness has signed it) covering exactly the exported entries.

Every exported entry is covered by the checkpoint: ``verify_export`` rebuilds the Merkle tree
from the two files (key leaves at their indexes, event leaves filling the rest in order) and
compares its root with the checkpoint's — so the export is provably the whole log at that
size, nothing left out, nothing added.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

from anchor.errors import AnchorError
from anchor.releases import list_tokens
from anchor.store.db import Database
from pledgewatch import canonical
from pledgewatch.checkpoint import Checkpoint, SignedNote
from pledgewatch.errors import ProofError
from pledgewatch.logentry import KeyRecord, event_leaf_from_wire, key_leaf, parse_leaf
from pledgewatch.merkle import CompactRange, leaf_hash

EXPORT_VERSION = 1
EVENTS_FILE = "signed-events.jsonl"
KEYS_FILE = "gateways.json"
MANIFEST_FILE = "manifest.json"
RELEASES_FILE = "releases.jsonl"
QUARANTINE_FILE = "quarantine.jsonl"


@dataclass(frozen=True, slots=True)
class ExportSummary:
    log_size: int
    events: int
    keys: int
    checkpoint_size: int


def export(db: Database, out_dir: Path) -> ExportSummary:
    tx = db.read()
    row = tx.one(
        "SELECT size, COALESCE(cosigned_note, note) FROM checkpoints ORDER BY size DESC LIMIT 1"
    )
    if row is None:
        raise AnchorError("nothing to export: the log has no checkpoint yet")
    size, note = row
    events = tx.all(
        "SELECT wire FROM events WHERE leaf_index IS NOT NULL AND leaf_index < ? "
        "ORDER BY leaf_index",
        (size,),
    )
    keys = tx.all(
        "SELECT leaf_index, leaf FROM key_records WHERE leaf_index IS NOT NULL AND "
        "leaf_index < ? ORDER BY leaf_index",
        (size,),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    event_bytes = b"".join(bytes(w) + b"\n" for (w,) in events)
    key_items = []
    for index, leaf in keys:
        record = parse_leaf(bytes(leaf))
        if not isinstance(record, KeyRecord):
            raise AnchorError(f"key_records row at {index} is not a key leaf")
        key_items.append({"leaf_index": index, "record": record.to_dict()})
    key_bytes = canonical.encode({"keys": key_items, "v": EXPORT_VERSION}) + b"\n"
    release_bytes = b"".join(w + b"\n" for w in list_tokens(db))
    refused = tx.all("SELECT received_ms, topic, reason, detail, raw FROM quarantine ORDER BY id")
    quarantine_bytes = b"".join(
        canonical.encode(
            {
                "detail": str(detail),
                "raw": base64.b64encode(bytes(raw)).decode("ascii"),
                "reason": str(reason),
                "received_ms": int(received_ms),
                "topic": str(topic),
            }
        )
        + b"\n"
        for received_ms, topic, reason, detail, raw in refused
    )
    (out_dir / EVENTS_FILE).write_bytes(event_bytes)
    (out_dir / KEYS_FILE).write_bytes(key_bytes)
    (out_dir / RELEASES_FILE).write_bytes(release_bytes)
    (out_dir / QUARANTINE_FILE).write_bytes(quarantine_bytes)
    cp = Checkpoint.parse(SignedNote.parse(note.encode()).body)
    manifest = {
        "checkpoint": note,
        "files": {
            EVENTS_FILE: hashlib.sha256(event_bytes).hexdigest(),
            KEYS_FILE: hashlib.sha256(key_bytes).hexdigest(),
            QUARANTINE_FILE: hashlib.sha256(quarantine_bytes).hexdigest(),
        },
        "log_size": size,
        "origin": cp.origin,
        "v": EXPORT_VERSION,
    }
    (out_dir / MANIFEST_FILE).write_bytes(canonical.encode(manifest) + b"\n")
    return ExportSummary(size, len(events), len(key_items), size)


def read_keys(path: Path) -> list[tuple[int, KeyRecord]]:
    value = canonical.decode(path.read_bytes().rstrip(b"\n"), max_bytes=64 << 20)
    if not isinstance(value, dict) or set(value) != {"keys", "v"} or value["v"] != 1:
        raise ProofError(f"{path.name}: want {{keys, v: 1}}")
    out = []
    for item in value["keys"]:
        if not isinstance(item, dict) or set(item) != {"leaf_index", "record"}:
            raise ProofError(f"{path.name}: each key wants leaf_index and record")
        out.append((item["leaf_index"], KeyRecord.from_dict(item["record"])))
    return out


def read_events(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def export_root(events: list[bytes], keys: list[tuple[int, KeyRecord]]) -> tuple[int, bytes]:
    """Rebuild the log from the export: key leaves at their indexes, events in order between."""
    by_index = dict(keys)
    compact = CompactRange()
    pending = iter(events)
    size = len(events) + len(keys)
    for index in range(size):
        record = by_index.get(index)
        if record is not None:
            compact.append(leaf_hash(key_leaf(record)))
            continue
        wire = next(pending, None)
        if wire is None:
            raise ProofError(f"export ends at entry {index}, want {size} entries")
        compact.append(leaf_hash(event_leaf_from_wire(wire)))
    return size, compact.root()
