"""An alert's evidence as files: one proof file per evidence event, plus ``index.json``.

Each proof file (``<event_id>.proof.json``) comes from ``anchor.proofs.build_event_proof``
and verifies offline (``pledgewatch verify``). An event that cannot be proven yet (not yet in
the log, no checkpoint covers it) is listed in the index with the reason; run the export
again later. The index holds the alert (as in its webhooks), and per event its file and
SHA-256, or its reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from anchor.alerts.errors import AlertError
from anchor.alerts.model import Alert
from anchor.alerts.webhooks import EvidenceLinks, alert_data
from anchor.proofs import ProofUnavailable, build_event_proof
from anchor.publish import LeafMirror
from anchor.store.db import Database

INDEX_NAME = "index.json"
INDEX_VERSION = 1
_EVENT_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    event_id: str
    file: str | None  # name inside the folder; None when not provable yet
    sha256: str | None
    reason: str | None  # why there is no file


def export_evidence(db: Database, alert: Alert, folder: Path) -> list[EvidenceFile]:
    """Write the proof files and the index into ``folder`` (created if missing)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AlertError(f"cannot create {folder}: {exc.strerror}") from None
    mirror = LeafMirror()
    results = [_one(db, event_id, folder, mirror) for event_id in alert.evidence]
    index = {
        "version": INDEX_VERSION,
        "alert": alert_data(alert, EvidenceLinks()),
        "events": [
            {"event_id": r.event_id, "file": r.file, "sha256": r.sha256, "reason": r.reason}
            for r in results
        ],
    }
    _write(folder / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True).encode() + b"\n")
    return results


def _one(db: Database, event_id: str, folder: Path, mirror: LeafMirror) -> EvidenceFile:
    if _EVENT_ID.fullmatch(event_id) is None:
        return EvidenceFile(event_id, None, None, "not an event id (want 64 hex digits)")
    try:
        data = build_event_proof(db, event_id, mirror)
    except ProofUnavailable as exc:
        return EvidenceFile(event_id, None, None, str(exc))
    name = f"{event_id}.proof.json"
    _write(folder / name, data)
    return EvidenceFile(event_id, name, hashlib.sha256(data).hexdigest(), None)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` durably (temporary file, fsync, rename); errors raise."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        raise AlertError(f"cannot write {path}: {exc.strerror}") from None
