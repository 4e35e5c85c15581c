"""``pledgewatch verify``: check a proof file offline, and optionally against its ledger.

    pledgewatch verify FILE --anchor-key HEX [--witness-key NAME:HEX ...] [--ledger URL]
                       [--require-ledger] [--json]

Prints every check of ``pledgewatch.prooffile.Check`` with ``ok``, ``FAILED`` or ``not run``,
then one line saying what was proven (or which check failed and what differed). ``--ledger``
also asks the ledger whether it holds the checkpoint's entry: ``ethereum+http(s)://HOST…``
(an Ethereum JSON-RPC endpoint) or ``sqlite:///PATH`` (the anchor's embedded ledger file,
opened read-only). Exit codes: 0 every check passed; 1 a check failed; 2 the file could not be
read, an argument is bad, or the ledger could not be asked.

Only the standard library and PyNaCl are imported, and the ledger modules only when
``--ledger`` is given, so a check starts fast on an auditor's laptop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pledgewatch import anchoring
from pledgewatch.anchoring import LedgerReceipt
from pledgewatch.errors import PledgewatchError, ProofError
from pledgewatch.events import Event, Kind
from pledgewatch.prooffile import (
    MAX_PROOF_BYTES,
    Check,
    LedgerLookup,
    VerificationFailed,
    VerifiedProof,
    WitnessKey,
    verify_proof_file,
)

_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ETHEREUM_SCHEMES = ("ethereum+http://", "ethereum+https://")


class UsageError(PledgewatchError):
    """A problem with the command's input rather than with the evidence (exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the proof file ('-' reads stdin)")
    parser.add_argument(
        "--anchor-key", required=True, type=_public_key, metavar="HEX",
        help="the anchor's checkpoint public key (64 hex digits)",
    )  # fmt: skip
    parser.add_argument(
        "--witness-key", action="append", default=[], type=_witness_key, metavar="NAME:HEX",
        help="a witness that must have cosigned the checkpoint (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--ledger", type=_ledger_url, metavar="URL",
        help="also check the ledger online: ethereum+http(s)://… or sqlite:///PATH",
    )  # fmt: skip
    parser.add_argument(
        "--require-ledger", action="store_true",
        help="fail unless the checkpoint was anchored on a ledger",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Verify ``args.file``; print the checks and a summary; return 0, 1 or 2 (see module)."""
    try:
        data = _read(args.file)
    except UsageError as exc:
        print(f"error: {exc}", file=err)
        return 2
    lookup = None if args.ledger is None else _lookup(args.ledger)
    try:
        proven = verify_proof_file(
            data,
            anchor_key=args.anchor_key,
            witness_keys=args.witness_key,
            require_ledger=args.require_ledger,
            ledger_lookup=lookup,
        )
    except VerificationFailed as exc:
        _report(out, args.json, failed=exc)
        return 1
    except PledgewatchError as exc:  # the ledger could not be asked
        _report(out, args.json, unchecked=Check.LEDGER, error=str(exc))
        print(f"error: {args.ledger.kind} ledger: {exc}", file=err)
        return 2
    _report(out, args.json, proven=proven)
    return 0


def _read(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read(MAX_PROOF_BYTES + 1)
        with open(path, "rb") as f:
            return f.read(MAX_PROOF_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _public_key(text: str) -> bytes:
    if _HEX_KEY.fullmatch(text) is None:
        raise argparse.ArgumentTypeError(f"got {text!r}, want 64 hex digits (an Ed25519 key)")
    return bytes.fromhex(text)


def _witness_key(text: str) -> WitnessKey:
    name, sep, hex_key = text.rpartition(":")
    if not sep or not name or any(c.isspace() or c == "+" for c in name):
        raise argparse.ArgumentTypeError(f"got {text!r}, want NAME:HEX (a note key name)")
    return WitnessKey(name, _public_key(hex_key))


@dataclass(frozen=True, slots=True)
class LedgerTarget:
    """Where ``--ledger`` points: ``kind`` is ``"ethereum"`` (``location`` the URL, which
    ``ethcheck`` understands) or ``"sqlite"`` (``location`` the file path)."""

    kind: str
    location: str


def _ledger_url(text: str) -> LedgerTarget:
    if text.startswith(ETHEREUM_SCHEMES):
        return LedgerTarget("ethereum", text)
    parts = urlsplit(text)
    path = unquote(parts.path)
    if (
        parts.scheme != "sqlite"
        or parts.netloc
        or parts.fragment
        or not path
        or "\x00" in path
        or any(k != "timeout_s" for k in parse_qs(parts.query, keep_blank_values=True))
    ):
        raise argparse.ArgumentTypeError(
            f"got {text!r}, want ethereum+http(s)://HOST[:PORT][/PATH] or sqlite:///PATH"
        )
    return LedgerTarget("sqlite", path)


def _lookup(target: LedgerTarget) -> LedgerLookup:
    def lookup(receipt: LedgerReceipt) -> None:
        if receipt.backend != target.kind:
            raise UsageError(
                f"the proof is anchored on {receipt.backend}, --ledger names {target.kind}"
            )
        if target.kind == "ethereum":
            from pledgewatch.ethcheck import check_ethereum_receipt_stdlib

            check_ethereum_receipt_stdlib(target.location, receipt)
        else:
            check_sqlite_receipt(target.location, receipt)

    return lookup


SQLITE_APPLICATION_ID = 0x50574C47  # "PWLG", as anchor.ledger.sqlite marks its files
SQLITE_SCHEMA_VERSION = 1
SQLITE_GENESIS_PAYLOAD = b"pledgewatch/sqlite-ledger/v1 genesis\n"


def check_sqlite_receipt(path: str, receipt: LedgerReceipt) -> None:
    """Open the embedded ledger file read-only and confirm ``receipt`` from raw rows.

    Walks ``ledger_entries`` from the genesis (height 0: prev_hash 32 zero bytes, the fixed
    genesis payload, entry hash = the receipt's ``ledger_id``) to ``receipt.block_number``,
    recomputing every entry hash and link, then compares that entry with the receipt. Raises
    ``ProofError`` when the file disagrees, ``UsageError`` when it cannot be read or is not a
    pledgewatch ledger.
    """
    import sqlite3

    if not os.path.isfile(path):
        raise UsageError(f"sqlite ledger {path}: no such file")
    # The ledger runs in WAL mode. With no -wal/-shm beside it, no writer has it open and every
    # entry is in the main file: read it as immutable, which creates no files (so a copy on
    # read-only media works too). Otherwise share the writer's WAL index, read-only.
    live = any(os.path.exists(path + suffix) for suffix in ("-wal", "-shm"))
    mode = "mode=ro" if live else "mode=ro&immutable=1"
    try:
        db = sqlite3.connect(f"file:{quote(path)}?{mode}", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise UsageError(f"sqlite ledger {path}: cannot open read-only: {exc}") from None
    try:
        marks = (
            db.execute("PRAGMA application_id").fetchone()[0],
            db.execute("PRAGMA user_version").fetchone()[0],
        )
        if marks != (SQLITE_APPLICATION_ID, SQLITE_SCHEMA_VERSION):
            raise UsageError(
                f"sqlite ledger {path}: not a pledgewatch ledger v{SQLITE_SCHEMA_VERSION} "
                f"(application_id, user_version: got {marks[0]:#x}, {marks[1]})"
            )
        db.execute("BEGIN")  # one snapshot for the whole walk
        rows = db.execute(
            "SELECT height, prev_hash, time_ms, payload, entry_hash FROM ledger_entries "
            "WHERE height >= 0 AND height <= ? ORDER BY height",
            (receipt.block_number,),
        )
        _walk_sqlite_chain(rows, receipt)
    except sqlite3.Error as exc:
        raise UsageError(f"sqlite ledger {path}: cannot read: {exc}") from None
    finally:
        db.close()


def _walk_sqlite_chain(rows: Iterable[tuple[object, ...]], receipt: LedgerReceipt) -> None:
    prev, reached, last = bytes(32), -1, (0, b"")
    for height, row in enumerate(rows):
        entry = _sqlite_entry(height, row)
        if height == 0 and entry[2] != SQLITE_GENESIS_PAYLOAD:
            raise ProofError("sqlite ledger: entry 0 is not a genesis entry")
        prev_hash, time_ms, payload, entry_hash = entry
        computed = anchoring.sqlite_entry_hash(prev_hash, height, time_ms, payload)
        if prev_hash != prev or computed != entry_hash:
            raise ProofError(
                f"sqlite ledger: entry {height} does not chain (link or hash differs)",
                expected=entry_hash.hex(),
                computed=computed.hex(),
            )
        if height == 0 and entry_hash.hex() != receipt.ledger_id:
            raise ProofError(
                "sqlite ledger id (genesis entry hash) differs from the receipt's",
                expected=receipt.ledger_id,
                computed=entry_hash.hex(),
            )
        prev, reached, last = entry_hash, height, (time_ms, payload)
    if reached != receipt.block_number:
        raise ProofError(
            f"sqlite ledger has no entry at height {receipt.block_number} (chain ends at "
            f"{reached})",
            expected=receipt.block_number,
            computed=reached,
        )
    for name, claimed, stored in (
        ("entry hash", receipt.tx_hash, prev.hex()),
        ("time_ms", receipt.block_time_ms, last[0]),
        ("payload", receipt.payload, last[1]),
    ):
        if claimed != stored:
            raise ProofError(
                f"sqlite ledger entry {reached}: {name} differs from the receipt",
                expected=claimed,
                computed=stored,
            )


def _sqlite_entry(height: int, row: tuple[object, ...]) -> tuple[bytes, int, bytes, bytes]:
    """``(prev_hash, time_ms, payload, entry_hash)`` of a row that must be entry ``height``."""
    stored_height, prev_hash, time_ms, payload, entry_hash = row
    if not (
        stored_height == height
        and isinstance(prev_hash, bytes)
        and isinstance(time_ms, int)
        and 0 <= time_ms < 2**63
        and isinstance(payload, bytes)
        and isinstance(entry_hash, bytes)
    ):
        raise ProofError(f"sqlite ledger: entry {height} is missing or malformed")
    return prev_hash, time_ms, payload, entry_hash


def _report(
    out: TextIO,
    as_json: bool,
    *,
    proven: VerifiedProof | None = None,
    failed: VerificationFailed | None = None,
    unchecked: Check | None = None,
    error: str | None = None,
) -> None:
    stop = failed.check if failed is not None else unchecked
    rows: list[tuple[Check, str, str]] = []
    for check in Check:
        if stop is None or _before(check, stop):
            rows.append((check, "ok", ""))
        elif check is stop:
            status = "FAILED" if failed is not None else "NOT CHECKED"
            rows.append((check, status, failed.detail if failed is not None else error or ""))
        else:
            rows.append((check, "not run", ""))
    if proven is not None:
        rows[-1] = (Check.LEDGER, "ok", _ledger_note(proven))
    summary = (
        _summary(proven)
        if proven is not None
        else f"NOT VERIFIED: {failed}"
        if failed is not None
        else f"NOT VERIFIED: the ledger could not be asked: {error}"
    )
    if as_json:
        obj = {
            "checks": [{"check": c.value, "detail": d, "status": s} for c, s, d in rows],
            "ok": proven is not None,
            "proven": None if proven is None else _proven_dict(proven),
            "summary": summary,
        }
        out.write(json.dumps(obj, ensure_ascii=False, sort_keys=True) + "\n")
        return
    for check, status, detail in rows:
        out.write(f"{check.value:<22}{status}{': ' + detail if detail else ''}\n")
    out.write(summary + "\n")


def _before(check: Check, stop: Check) -> bool:
    order = list(Check)
    return order.index(check) < order.index(stop)


def _ledger_note(proven: VerifiedProof) -> str:
    if proven.ledger is None:
        return "not anchored"
    how = "confirmed online" if proven.ledger_checked_online else "receipt checked offline only"
    return f"{proven.ledger_locator} ({how})"


def _summary(p: VerifiedProof) -> str:
    e = p.signed.event
    witnesses = (
        ", ".join(f"{w.name} at {_time(w.timestamp_s * 1000)}" for w in p.witnesses)
        if p.witnesses
        else "no witness"
    )
    return (
        f"event {p.event_id} ({describe_event(e)} at {_time(e.ts_ms)} by device {e.device} of "
        f"{e.gateway}/{e.warehouse}) is entry {p.leaf_index} of log {p.origin} at size {p.size}"
        f", witnessed by {witnesses}, "
        + ("not anchored on a ledger" if p.ledger is None else f"anchored on {_ledger_note(p)}")
    )


def describe_event(e: Event) -> str:
    """A few words for an event: "LOAD of 4 × steel-coil lot WR-1 in bay A1"."""
    if e.kind in (Kind.LOAD, Kind.UNLOAD, Kind.COUNT):
        text = f"{e.kind.value} of {e.qty} × {e.sku} lot {e.lot} in bay {e.bay}"
        if e.release is not None:
            text += f" under release {e.release}"
        return text
    if e.kind is Kind.WEIGHT:
        return f"WEIGHT of {e.grams} g in bay {e.bay}"
    if e.kind is Kind.DOOR:
        door = e.door.value if e.door is not None else "?"
        return f"DOOR {door}" + (f" at {e.bay}" if e.bay is not None else "")
    if e.kind is Kind.TAMPER:
        return f"TAMPER ({e.reason})" + (f" at {e.bay}" if e.bay is not None else "")
    return e.kind.name


def _time(ms: int) -> str:
    try:
        t = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return f"{ms} ms after 1970"
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _proven_dict(p: VerifiedProof) -> dict[str, Any]:
    return {
        "event": p.signed.event.to_dict(),
        "event_id": p.event_id,
        "leaf_index": p.leaf_index,
        "key_id": p.key_record.key_id,
        "key_leaf_index": p.key_index,
        "origin": p.origin,
        "size": p.size,
        "root": p.root.hex(),
        "witnesses": [{"name": w.name, "timestamp": w.timestamp_s} for w in p.witnesses],
        "ledger": None if p.ledger is None else p.ledger.to_dict(),
        "ledger_checked_online": p.ledger_checked_online,
        "ledger_locator": p.ledger_locator,
    }
