"""The loan-period collateral statement: what a bank gets for one loan over ``[start, end]``.

``build_statement(db, loan_id, start, end, trust, now_ms)`` reads the store and returns a
``Statement`` (frozen dataclasses, no I/O after it returns); ``write_statement`` writes it as
four files into a folder (docs/statement.md describes them for the bank):

- ``statement.html``: one self-contained page (inline CSS and SVG, no scripts, no external
  assets; every value HTML-escaped): the loan, the coverage chart, movements, alerts, and the
  two checkpoint notes with the consistency proof between them.
- ``statement.csv``: one row per day: ``date, collateral_value, outstanding, coverage,
  warning_ratio, liquidation_ratio, status, book_version, unpriced``.
- ``movements.csv``: ``time, kind, lot, sku, qty, bay, release, event_id, leaf_index``.
- ``consistency.json``: ``STATEMENT_FORMAT``: both signed notes, their sizes and the proof.

**Coverage, day by day.** For each UTC day D of the period, at ``at_ms`` = the last
millisecond of D: the loan book version in force at ``at_ms`` (the rule of
``anchor.loans.book_at``), the stock of the loan's lines from the stored LOAD / UNLOAD / COUNT
events with ``ts_ms <= at_ms`` (the reconciler's own stock algebra: its
``IncrementalState``, whose snapshot equals ``batch.snapshot_from_frame`` at that cutoff),
valued with the prices of day D exactly as the reconciler
values coverage (``collateral_value``). Status: ``breach`` below the liquidation line (or a
dynamic pledge under its minimum value), ``warning`` below the warning line, else ``ok``;
``not_in_force`` outside the loan's term, ``no_debt`` with nothing outstanding, ``no_book``
when the book in force does not list the loan. Events are taken as the store holds them when
the statement is made (a late upload counts on the day its device signed it).

Cost: one query loads the warehouse's stock events up to the period's end; only those
whose wire names one of the loan's lots (or SKUs) are decoded, n of them, sorted once. They
are swept through one ``IncrementalState`` in order (O(n) in all, events arrive sorted), with
a snapshot at each cutoff on a day that had such events (else the last one is reused; a
snapshot is O(lines)); valuing a day is O(pledges × prices). So O(n log n + D·(lines + p)).
Measured: 120 days, 6 000 loan movements (12 000 in the warehouse) in 0.6 s; 48 000 (96 000)
in 4.6 s, mostly the strict decoding of the events. The period is limited to ``MAX_DAYS``.
(A batch snapshot per day, ``snapshot_from_frame`` at each cutoff, re-sorts the history
every day, O(D·n log n): before the decode filter it took 3.6 s and 22 s on the same data,
the sweep 0.8 s and 11 s.)

**Consistency.** From the first checkpoint cut at or after the loan's start (00:00 UTC; if
none, the earliest checkpoint) to the latest one: both notes are verified with the log's key
(and the witness's cosignature, where present and a witness key is given), the proof is
built from the ``leaves`` table and verified with ``pledgewatch.merkle.verify_consistency``
before the statement exists. A failure raises; nothing is written.

CSV text cells that a spreadsheet would run as a formula (first character ``= + - @``, tab or
CR) are written with a leading ``'`` (lots, bays and release refs are device text).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import html
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from anchor.alerts.model import ALERT_COLUMNS, Alert, alert_from_row, severity_name
from anchor.alerts.webhooks import rfc3339
from anchor.errors import AnchorError
from anchor.loanbook import Loan, LoanBook, PledgeType
from anchor.loans import BookVersion, list_versions, load_book
from anchor.publish import LeafMirror
from anchor.reconcile.collateral import StockIndex, lot_pledges
from anchor.reconcile.settings import DAY_MS
from anchor.reconcile.snapshot import StateConfig, order_key
from anchor.reconcile.state import IncrementalState
from anchor.store.db import Database
from pledgewatch import canonical
from pledgewatch.checkpoint import (
    NoteVerifier,
    SignedNote,
    verify_checkpoint,
    verify_cosignature,
)
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import Event, Kind, SignedEvent
from pledgewatch.merkle import verify_consistency

MAX_DAYS = 366
STATEMENT_FORMAT = "pledgewatch-statement-consistency/v1"
STOCK_KINDS = ("LOAD", "UNLOAD", "COUNT")
_EPOCH = dt.date(1970, 1, 1)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class StatementError(AnchorError):
    """The statement cannot be made: no checkpoint, a proof that fails, a bad store row."""


class PeriodError(StatementError):
    """The period asked for is not a valid one (end before start, too long)."""


class UnknownLoan(StatementError):
    """No version of the loan book lists the loan."""


class DayStatus(enum.Enum):
    OK = "ok"
    WARNING = "warning"  # coverage below the warning line: margin call
    BREACH = "breach"  # below the liquidation line, or a dynamic pledge under min_value
    NOT_IN_FORCE = "not_in_force"  # the day is outside the loan's term
    NO_DEBT = "no_debt"  # outstanding 0: coverage is undefined
    NO_BOOK = "no_book"  # no book version in force, or it does not list the loan


@dataclass(frozen=True, slots=True)
class LogTrust:
    """Whose signatures the checkpoint notes must carry: the log's (its note key name is the
    origin) and, for notes that were cosigned, the bank's witness if given."""

    origin: str
    public_key: bytes
    witness_name: str | None = None
    witness_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Valuation:
    value: Decimal
    unpriced: tuple[str, ...]  # SKUs held but without a price that day (valued at 0)


@dataclass(frozen=True, slots=True)
class DayCoverage:
    day: dt.date
    at_ms: int  # the last millisecond of the day (UTC): what the values are as of
    status: DayStatus
    book_version: int | None
    collateral_value: Decimal | None
    outstanding: Decimal | None
    coverage: Decimal | None  # value ÷ outstanding, unrounded; None unless in force with debt
    warning_ratio: Decimal | None
    liquidation_ratio: Decimal | None
    unpriced: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Movement:
    """A LOAD, UNLOAD or COUNT of one of the loan's lines (its lots; a dynamic pledge: SKUs)."""

    event_id: str
    ts_ms: int
    kind: Kind
    warehouse: str
    bay: str
    lot: str
    sku: str
    qty: int
    release: str | None
    leaf_index: int | None  # its position in the Merkle log; None: not sequenced yet


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    size: int
    root: bytes
    created_ms: int
    note: bytes  # as stored: the cosigned note if the witness cosigned it
    witnessed: bool  # carries a cosignature that was verified with the witness key


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The log of size ``new.size`` extends the one of ``old.size``: verified, RFC 9162."""

    old: CheckpointRef
    new: CheckpointRef
    proof: tuple[bytes, ...]
    origin: str
    log_vkey: str  # the log's note verifier key, ``name+hash+base64``


@dataclass(frozen=True, slots=True)
class Statement:
    loan: Loan  # as the latest book version of the period that lists it has it
    start: dt.date
    end: dt.date
    generated_ms: int
    days: tuple[DayCoverage, ...]
    movements: tuple[Movement, ...]
    alerts: tuple[Alert, ...]  # of the loan (or its lots), active at some time in the period
    consistency: ConsistencyProof


@dataclass(frozen=True, slots=True)
class _Lines:
    """What the loan's collateral is made of, over every book version of the period."""

    warehouses: frozenset[str]
    lots: frozenset[tuple[str, str]]  # (warehouse, lot): static pledges
    skus: frozenset[tuple[str, str]]  # (warehouse, sku): dynamic pledges, eligible SKUs

    def needles(self) -> tuple[bytes, ...]:
        """Byte strings one of which the canonical wire of every touching event contains
        (``"lot":<lot>`` or ``"sku":<sku>``, as ``canonical.encode`` spells them)."""
        lots = {b'"lot":' + canonical.encode(lot) for _, lot in self.lots}
        return tuple(sorted(lots | {b'"sku":' + canonical.encode(sku) for _, sku in self.skus}))

    def touches(self, event: Event) -> bool:
        return (event.warehouse, event.lot or "") in self.lots or (
            event.warehouse,
            event.sku or "",
        ) in self.skus


def day_start_ms(day: dt.date) -> int:
    return (day - _EPOCH).days * DAY_MS


def day_end_ms(day: dt.date) -> int:
    return day_start_ms(day) + DAY_MS - 1


# --- the statement --------------------------------------------------------------------------


def build_statement(
    db: Database, loan_id: str, start: dt.date, end: dt.date, trust: LogTrust, now_ms: int
) -> Statement:
    """The statement of ``loan_id`` over the UTC days ``start..end`` (see the module doc).

    Raises ``PeriodError``, ``UnknownLoan``, ``StatementError`` (no checkpoint, a proof or a
    note that does not verify), ``LoanBookError`` (no loan book at all).
    """
    days = _days(start, end)
    cutoffs = [day_end_ms(day) for day in days]
    books = _books_at(db, cutoffs)
    loan = _the_loan(db, loan_id, books)
    lines = _lines_of(loan_id, [b for b in books if b is not None] or [load_book(db)])
    events = _stock_events(db, lines, cutoffs[-1])
    coverage = _coverage(loan_id, days, cutoffs, books, events)
    first_ms = day_start_ms(start)
    movements = tuple(_movement(e, i) for e, i in events if e.event.ts_ms >= first_ms)
    return Statement(
        loan=loan,
        start=start,
        end=end,
        generated_ms=now_ms,
        days=coverage,
        movements=movements,
        alerts=_alerts(db, loan_id, lines, first_ms, cutoffs[-1]),
        consistency=consistency_since(db, day_start_ms(loan.start), trust),
    )


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    if end < start:
        raise PeriodError(f"period: got {start}..{end}, want an end on or after the start")
    count = (end - start).days + 1
    if count > MAX_DAYS:
        raise PeriodError(f"period: got {count} days, want at most {MAX_DAYS}")
    return [start + dt.timedelta(days=i) for i in range(count)]


def _books_at(db: Database, cutoffs: Sequence[int]) -> list[LoanBook | None]:
    """``book_at(db, at)`` for every cutoff, reading each version once."""
    versions = list_versions(db)
    loaded: dict[int, LoanBook] = {}
    out: list[LoanBook | None] = []
    for at in cutoffs:
        live = _in_force(versions, at)
        if live is None:
            out.append(None)
            continue
        if live.version not in loaded:
            loaded[live.version] = load_book(db, live.version)
        out.append(loaded[live.version])
    return out


def _in_force(versions: Iterable[BookVersion], at_ms: int) -> BookVersion | None:
    """The version ``anchor.loans.read_book_at`` picks: latest ``valid_from_ms``, then
    highest version, among those valid from ``at_ms`` or earlier."""
    live = [v for v in versions if v.valid_from_ms <= at_ms]
    return max(live, key=lambda v: (v.valid_from_ms, v.version), default=None)


def _the_loan(db: Database, loan_id: str, books: Sequence[LoanBook | None]) -> Loan:
    for book in reversed(books):
        loan = None if book is None else book.loan(loan_id)
        if loan is not None:
            return loan
    latest = load_book(db)
    loan = latest.loan(loan_id)
    if loan is None:
        raise UnknownLoan(
            f"loan {loan_id!r} is not in the loan book (not in the versions in force during"
            f" the period, nor in the latest, version {latest.version})"
        )
    return loan


def _lines_of(loan_id: str, books: Iterable[LoanBook]) -> _Lines:
    warehouses, lots, skus = set(), set(), set()
    for book in books:
        loan = book.loan(loan_id)
        if loan is None:
            continue
        warehouses.add(loan.warehouse)
        for p in book.pledges:
            if p.loan_id != loan_id:
                continue
            if loan.pledge_type is PledgeType.STATIC and p.lot is not None:
                lots.add((loan.warehouse, p.lot))
            elif loan.pledge_type is PledgeType.DYNAMIC and p.lot is None:
                skus.add((loan.warehouse, p.sku))
    return _Lines(frozenset(warehouses), frozenset(lots), frozenset(skus))


def _stock_events(
    db: Database, lines: _Lines, until_ms: int
) -> list[tuple[SignedEvent, int | None]]:
    """The stored stock events of the loan's lines with ``ts_ms <= until_ms``, in event order
    (``order_key``), each with its leaf index."""
    if not lines.warehouses:
        return []
    where = ", ".join("?" for _ in lines.warehouses)
    kinds = ", ".join("?" for _ in STOCK_KINDS)
    rows = db.read().all(
        f"SELECT wire, leaf_index FROM events WHERE warehouse IN ({where})"  # noqa: S608
        f" AND kind IN ({kinds}) AND ts_ms <= ?",
        (*sorted(lines.warehouses), *STOCK_KINDS, until_ms),
    )
    out = []
    needles = lines.needles()
    for wire, leaf_index in rows:
        data = bytes(wire)
        if not any(needle in data for needle in needles):
            continue  # cannot be one of the loan's lines: skip the (costly) strict decode
        signed = SignedEvent.from_wire(data)
        if lines.touches(signed.event):
            out.append((signed, None if leaf_index is None else int(leaf_index)))
    out.sort(key=lambda pair: order_key(pair[0].event, pair[0].event_id))
    return out


def _coverage(
    loan_id: str,
    days: Sequence[dt.date],
    cutoffs: Sequence[int],
    books: Sequence[LoanBook | None],
    events: Sequence[tuple[SignedEvent, int | None]],
) -> tuple[DayCoverage, ...]:
    """Sweep the events in order through the reconciler's ``IncrementalState`` and take its
    snapshot at each day's cutoff (its stock equals ``snapshot_from_frame`` at that cutoff)."""
    state = IncrementalState(StateConfig(watch_lots=frozenset()))  # stock only: no unloads
    index, applied, out = StockIndex(state.snapshot()), 0, []
    for day, at_ms, book in zip(days, cutoffs, books, strict=True):
        start = applied
        while applied < len(events) and events[applied][0].event.ts_ms <= at_ms:
            signed = events[applied][0]
            state.apply(signed.event, signed.event_id)
            applied += 1
        if applied != start:  # stock events that day: a new snapshot, else keep the last
            index = StockIndex(state.snapshot())
        out.append(_day(loan_id, day, at_ms, book, index))
    return tuple(out)


def collateral_value(book: LoanBook, loan: Loan, index: StockIndex, day: dt.date) -> Valuation:
    """The loan's collateral value on ``day``, as ``anchor.reconcile.collateral`` values it
    for coverage: static Σ min(stock of the lot, pledged qty) × price, dynamic Σ stock of
    each eligible SKU in the loan's warehouse × price; negative stock counts 0, an SKU
    without a price counts 0 and is named in ``unpriced``."""
    holdings: list[tuple[str, int]] = []
    if loan.pledge_type is PledgeType.STATIC:
        for p in lot_pledges(book):
            if p.loan.loan_id == loan.loan_id:
                stock = sum(x.qty for x in index.lot(loan.warehouse, p.lot, p.sku))
                holdings.append((p.sku, min(max(stock, 0), p.qty)))
    else:
        eligible = {p.sku for p in book.pledges_of(loan.loan_id) if p.lot is None}
        for sku in sorted(eligible):
            found = index.by_sku.get((loan.warehouse, sku), [])
            holdings.append((sku, sum(max(x.qty, 0) for x in found)))
    value, unpriced = Decimal(0), set()
    for sku, qty in holdings:
        price = book.price(sku, day)
        if price is None:
            if qty:
                unpriced.add(sku)
            continue
        value += price * qty
    return Valuation(value, tuple(sorted(unpriced)))


def _day(
    loan_id: str, day: dt.date, at_ms: int, book: LoanBook | None, index: StockIndex
) -> DayCoverage:
    loan = None if book is None else book.loan(loan_id)
    if book is None or loan is None:
        version = None if book is None else book.version
        return DayCoverage(day, at_ms, DayStatus.NO_BOOK, version, None, None, None, None, None)
    valued = collateral_value(book, loan, index, day)
    ratio = None
    if not loan.in_force(day):
        status = DayStatus.NOT_IN_FORCE
    elif loan.outstanding <= 0:
        status = DayStatus.NO_DEBT
    else:
        ratio = valued.value / loan.outstanding
        status = _status(loan, valued.value, ratio)
    return DayCoverage(
        day=day,
        at_ms=at_ms,
        status=status,
        book_version=book.version,
        collateral_value=valued.value,
        outstanding=loan.outstanding,
        coverage=ratio,
        warning_ratio=loan.warning_ratio,
        liquidation_ratio=loan.liquidation_ratio,
        unpriced=valued.unpriced,
    )


def _status(loan: Loan, value: Decimal, ratio: Decimal) -> DayStatus:
    """The thresholds of ``COVERAGE_BREACH`` / ``COVERAGE_WARNING`` (anchor.reconcile.rules)."""
    floor = loan.pledge_type is PledgeType.DYNAMIC and loan.min_value > 0 and value < loan.min_value
    if ratio < loan.liquidation_ratio or floor:
        return DayStatus.BREACH
    if ratio < loan.warning_ratio:
        return DayStatus.WARNING
    return DayStatus.OK


def _movement(signed: SignedEvent, leaf_index: int | None) -> Movement:
    e = signed.event
    assert e.bay is not None and e.lot is not None and e.sku is not None and e.qty is not None
    return Movement(
        signed.event_id, e.ts_ms, e.kind, e.warehouse, e.bay, e.lot, e.sku, e.qty, e.release,
        leaf_index,
    )  # fmt: skip


def _alerts(
    db: Database, loan_id: str, lines: _Lines, from_ms: int, to_ms: int
) -> tuple[Alert, ...]:
    """Alerts of the loan, or of one of its lots without a loan (a double pledge), that were
    active at some time in ``[from_ms, to_ms]``; oldest first."""
    about = "loan_id = ?"
    params: list[object] = [to_ms, from_ms, loan_id]
    for warehouse, lot in sorted(lines.lots):
        about += " OR (loan_id IS NULL AND warehouse = ? AND lot = ?)"
        params += [warehouse, lot]
    rows = db.read().all(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE opened_ms <= ?"  # noqa: S608
        f" AND (resolved_ms IS NULL OR resolved_ms >= ?) AND ({about}) ORDER BY opened_ms, id",
        params,
    )
    return tuple(alert_from_row(r) for r in rows)


# --- consistency ----------------------------------------------------------------------------


def consistency_since(db: Database, since_ms: int, trust: LogTrust) -> ConsistencyProof:
    """The verified consistency proof from the first checkpoint created at or after
    ``since_ms`` (else the earliest) to the latest checkpoint."""
    columns = "SELECT size, root, created_ms, COALESCE(cosigned_note, note) FROM checkpoints"
    tx = db.read()
    old = tx.one(f"{columns} WHERE created_ms >= ? ORDER BY created_ms, size LIMIT 1", (since_ms,))
    old = old or tx.one(f"{columns} ORDER BY size LIMIT 1")
    new = tx.one(f"{columns} ORDER BY size DESC LIMIT 1")
    if old is None or new is None:
        raise StatementError("the log has no checkpoint yet: nothing to prove; retry later")
    first, last = _checkpoint(old, trust), _checkpoint(new, trust)
    if first.size == 0:
        raise StatementError("checkpoint of size 0: a consistency proof needs size >= 1")
    mirror = LeafMirror()
    mirror.sync(db)
    try:
        proof = mirror.tree.consistency_proof(first.size, last.size)
        verify_consistency(first.size, last.size, proof, first.root, last.root)
    except PledgewatchError as exc:
        raise StatementError(
            f"the log is not consistent from checkpoint {first.size} to {last.size}: {exc}"
        ) from exc
    vkey = NoteVerifier.ed25519(trust.origin, trust.public_key).vkey()
    return ConsistencyProof(first, last, tuple(proof), trust.origin, vkey)


def _checkpoint(row: tuple[Any, ...], trust: LogTrust) -> CheckpointRef:
    """A checkpoint row whose note verifies and names the row's size and root."""
    size, root, created_ms, text = int(row[0]), bytes(row[1]), int(row[2]), str(row[3])
    note = text.encode()
    try:
        checkpoint = verify_checkpoint(note, trust.origin, trust.public_key, origin=trust.origin)
        witnessed = _cosigned(note, trust)
    except PledgewatchError as exc:
        raise StatementError(f"checkpoint {size}: its note does not verify: {exc}") from exc
    if (checkpoint.size, checkpoint.root) != (size, root):
        raise StatementError(
            f"checkpoint {size}: got note size {checkpoint.size} root {checkpoint.root.hex()},"
            f" want the row's size {size} root {root.hex()}"
        )
    return CheckpointRef(size, root, created_ms, note, witnessed)


def _cosigned(note: bytes, trust: LogTrust) -> bool:
    if trust.witness_name is None or trust.witness_key is None:
        return False
    signed = SignedNote.parse(note)
    if not any(s.name == trust.witness_name for s in signed.signatures):
        return False
    verify_cosignature(signed, trust.witness_name, trust.witness_key)
    return True


# --- writers --------------------------------------------------------------------------------


def write_statement(statement: Statement, folder: Path) -> tuple[Path, ...]:
    """Write the four files into ``folder`` (created if missing); each file is written to a
    temporary name and renamed, so a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "statement.html": render_html(statement),
        "statement.csv": daily_csv(statement),
        "movements.csv": movements_csv(statement),
        "consistency.json": consistency_json(statement),
    }
    paths = []
    for name, text in files.items():
        path = folder / name
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8", newline="")
        os.replace(tmp, path)
        paths.append(path)
    return tuple(paths)


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def _ratio(value: Decimal | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _iso(ms: int) -> str:
    return rfc3339(ms)


def _cell(text: str | None) -> str:
    """A CSV text cell; one a spreadsheet would run as a formula gets a leading ``'``."""
    if text is None:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


DAILY_HEADER = (
    "date", "collateral_value", "outstanding", "coverage", "warning_ratio", "liquidation_ratio",
    "status", "book_version", "unpriced",
)  # fmt: skip
MOVEMENTS_HEADER = (
    "time", "kind", "lot", "sku", "qty", "bay", "release", "event_id", "leaf_index",
)  # fmt: skip


def daily_csv(statement: Statement) -> str:
    """Coverage rounded to 4 places (as the reconciler's messages); money exact."""
    return _csv(
        DAILY_HEADER,
        (
            (
                d.day.isoformat(),
                _plain(d.collateral_value),
                _plain(d.outstanding),
                _ratio(d.coverage),
                _plain(d.warning_ratio),
                _plain(d.liquidation_ratio),
                d.status.value,
                "" if d.book_version is None else d.book_version,
                " ".join(_cell(sku) for sku in d.unpriced),
            )
            for d in statement.days
        ),
    )


def movements_csv(statement: Statement) -> str:
    return _csv(
        MOVEMENTS_HEADER,
        (
            (
                _iso(m.ts_ms),
                m.kind.value,
                _cell(m.lot),
                _cell(m.sku),
                m.qty,
                _cell(m.bay),
                _cell(m.release),
                m.event_id,
                "" if m.leaf_index is None else m.leaf_index,
            )
            for m in statement.movements
        ),
    )


def consistency_json(statement: Statement) -> str:
    c = statement.consistency

    def side(ref: CheckpointRef) -> dict[str, object]:
        return {
            "size": ref.size,
            "root_hex": ref.root.hex(),
            "created": _iso(ref.created_ms),
            "witnessed": ref.witnessed,
            "note": ref.note.decode(),
        }

    document = {
        "format": STATEMENT_FORMAT,
        "loan_id": statement.loan.loan_id,
        "origin": c.origin,
        "log_vkey": c.log_vkey,
        "old_size": c.old.size,
        "new_size": c.new.size,
        "old": side(c.old),
        "new": side(c.new),
        "proof": [h.hex() for h in c.proof],
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# --- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:72em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.25em .5em;
text-align:left;font-size:.9em}th{background:#eee}pre{background:#f6f6f6;padding:.5em;
overflow-x:auto}code,pre{font-size:.85em}.breach{color:#b00}.warning{color:#b60}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>\n" for row in rows)
    if not body:
        return f"<p>{_e(empty)}</p>\n"
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def render_html(statement: Statement) -> str:
    loan = statement.loan
    title = f"Collateral statement {loan.loan_id}, {statement.start} to {statement.end}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        f"<h1>{_e(title)}</h1>\n",
        _header_table(statement),
        "<h2>Coverage at the end of each day (UTC)</h2>\n",
        coverage_svg(statement.days),
        _days_table(statement),
        "<h2>Movements of the pledged lots</h2>\n",
        _movements_table(statement),
        "<h2>Alerts</h2>\n",
        _alerts_table(statement),
        "<h2>The log was not rewritten during the loan</h2>\n",
        _consistency_html(statement.consistency),
        "</body>\n</html>\n",
    ]
    return "".join(parts)


def _header_table(statement: Statement) -> str:
    loan = statement.loan
    versions = sorted({d.book_version for d in statement.days if d.book_version is not None})
    rows = [
        ("loan", loan.loan_id),
        ("borrower", loan.borrower),
        ("warehouse", loan.warehouse),
        ("currency", loan.currency),
        ("pledge", f"{loan.pledge_type.value}, advance rate {loan.advance_rate}"),
        ("term", f"{loan.start} to {loan.end}"),
        ("period", f"{statement.start} to {statement.end} ({len(statement.days)} days, UTC)"),
        ("loan book versions", ", ".join(map(str, versions)) or "none in force"),
        ("generated", _iso(statement.generated_ms)),
    ]
    return (
        "<table>\n"
        + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>\n" for k, v in rows)
        + "</table>\n"
    )


def _days_table(statement: Statement) -> str:
    rows = [
        (
            d.day,
            _plain(d.collateral_value),
            _plain(d.outstanding),
            _ratio(d.coverage),
            _plain(d.warning_ratio),
            _plain(d.liquidation_ratio),
            d.status.value + (f" (no price: {', '.join(d.unpriced)})" if d.unpriced else ""),
        )
        for d in statement.days
    ]
    header = (
        "date",
        f"collateral ({statement.loan.currency})",
        "outstanding",
        "coverage",
        "warning",
        "liquidation",
        "status",
    )
    return _table(header, rows, "no days")


def _movements_table(statement: Statement) -> str:
    rows = [
        (_iso(m.ts_ms), m.kind.value, m.lot, m.sku, m.qty, m.bay, m.release or "", m.event_id)
        for m in statement.movements
    ]
    header = ("time (UTC)", "kind", "lot", "sku", "qty", "bay", "release", "event id")
    return _table(header, rows, "No movement of the pledged lots in the period.")


def _alerts_table(statement: Statement) -> str:
    rows = [
        (
            a.rule.value,
            severity_name(a.severity),
            a.state.value,
            _iso(a.opened_ms),
            "" if a.resolved_ms is None else _iso(a.resolved_ms),
            a.message,
        )
        for a in statement.alerts
    ]
    header = ("rule", "severity", "state", "opened", "resolved", "message")
    return _table(header, rows, "No alert concerning this loan in the period.")


def _consistency_html(c: ConsistencyProof) -> str:
    hashes = "".join(f"<li><code>{h.hex()}</code></li>\n" for h in c.proof)
    proof = f"<ol>\n{hashes}</ol>\n" if hashes else "<p>(empty: the two checkpoints are one)</p>\n"

    def note(ref: CheckpointRef, label: str) -> str:
        seal = ", cosigned by the witness" if ref.witnessed else ""
        return (
            f"<h3>{_e(label)}: size {ref.size}, cut {_e(_iso(ref.created_ms))}{seal}</h3>\n"
            f"<pre>{_e(ref.note.decode())}</pre>\n"
        )

    return (
        f"<p>Log <code>{_e(c.origin)}</code>, verifier key <code>{_e(c.log_vkey)}</code>. "
        "Both notes were verified with that key and the RFC 9162 consistency proof below "
        "was verified before this statement was written; docs/statement.md says how to "
        "check it yourself.</p>\n"
        + note(c.old, "At drawdown")
        + note(c.new, "Latest")
        + f"<h3>Consistency proof ({len(c.proof)} hashes)</h3>\n"
        + proof
    )


# --- SVG chart ------------------------------------------------------------------------------

_W, _H = 760, 320
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 44, 32, 56  # the legend is above _TOP
_STEPS = (Decimal("0.05"), Decimal("0.1"), Decimal("0.2"), Decimal("0.25"), Decimal("0.5"))
_COLOURS = {DayStatus.OK: "#1a7f37", DayStatus.WARNING: "#b60", DayStatus.BREACH: "#b00"}


@dataclass(frozen=True, slots=True)
class _Axes:
    days: int
    top: Decimal  # the coverage at the top of the plot: ``ticks`` × ``step``
    step: Decimal
    ticks: int

    def x(self, i: int) -> float:
        width = _W - _LEFT - _RIGHT
        return _LEFT + (width / 2 if self.days < 2 else width * i / (self.days - 1))

    def y(self, value: Decimal) -> float:
        height = _H - _TOP - _BOTTOM
        return _TOP + height * (1 - float(value / self.top))


def _axes(days: int, highest: Decimal) -> _Axes:
    """A y axis from 0 to at least 10 % above ``highest``, in 4 to 8 round steps."""
    want = max(highest * Decimal("1.1"), Decimal("0.1"))
    scale = Decimal(1)
    while True:
        for step in (s * scale for s in _STEPS):
            ticks = math.ceil(want / step)
            if ticks <= 8:
                return _Axes(days, step * ticks, step, ticks)
        scale *= 10


def coverage_svg(days: Sequence[DayCoverage]) -> str:
    """An inline SVG: one point per day with a coverage, the coverage line, the warning and
    liquidation lines (step lines that are horizontal while the book keeps them), axes."""
    values = [
        v for d in days for v in (d.coverage, d.warning_ratio, d.liquidation_ratio) if v is not None
    ]
    axes = _axes(len(days), max(values, default=Decimal(1)))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="coverage by day">\n',
        "<title>Coverage (collateral value ÷ outstanding) at the end of each day</title>\n",
        *_svg_axes(axes, days),
        _svg_line(axes, [d.liquidation_ratio for d in days], "liquidation-line", "#b00"),
        _svg_line(axes, [d.warning_ratio for d in days], "warning-line", "#b60"),
        _svg_line(axes, [d.coverage for d in days], "coverage-line", "#1f4e99", dash=False),
        *_svg_points(axes, days),
        *_svg_legend(),
        "</svg>\n",
    ]
    return "".join(parts)


def _svg_axes(axes: _Axes, days: Sequence[DayCoverage]) -> list[str]:
    bottom, right = _H - _BOTTOM, _W - _RIGHT
    out = [
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#444"/>\n',
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#444"/>\n',
    ]
    for k in range(axes.ticks + 1):
        value = axes.step * k
        y = axes.y(value)
        out.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11">'
            f'{value:.2f}</text><line x1="{_LEFT - 3}" y1="{y:.1f}" x2="{_LEFT}" '
            f'y2="{y:.1f}" stroke="#444"/>\n'
        )
    step = max(1, -(-len(days) // 8))  # at most about 8 date labels
    for i in range(0, len(days), step):
        out.append(
            f'<text x="{axes.x(i):.1f}" y="{bottom + 16}" text-anchor="middle" '
            f'font-size="11">{_e(days[i].day.isoformat())}</text>\n'
        )
    out.append(
        f'<text x="{(_LEFT + right) / 2:.1f}" y="{_H - 8}" text-anchor="middle" '
        'font-size="12">day (UTC, values at the end of the day)</text>\n'
    )
    middle = (_TOP + bottom) / 2
    out.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 14 {middle:.1f})">coverage (collateral ÷ outstanding)</text>\n'
    )
    if not any(d.coverage is not None for d in days):
        out.append(
            f'<text x="{(_LEFT + right) / 2:.1f}" y="{middle:.1f}" text-anchor="middle" '
            'font-size="13">no coverage to plot in this period</text>\n'
        )
    return out


def _svg_line(
    axes: _Axes, values: Sequence[Decimal | None], name: str, colour: str, *, dash: bool = True
) -> str:
    """One polyline per run of days with a value (a gap where there is none)."""
    runs: list[list[str]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append(f"{axes.x(i):.1f},{axes.y(value):.1f}")
    style = ' stroke-dasharray="6 4"' if dash else ""
    return "".join(
        f'<polyline class="{name}" fill="none" stroke="{colour}" stroke-width="2"{style} '
        f'points="{" ".join(run)}"/>\n'
        for run in runs
        if run
    )


def _svg_points(axes: _Axes, days: Sequence[DayCoverage]) -> list[str]:
    return [
        f'<circle class="coverage-point" cx="{axes.x(i):.1f}" cy="{axes.y(d.coverage):.1f}" '
        f'r="3.5" fill="{_COLOURS.get(d.status, "#444")}"><title>'
        f"{_e(d.day.isoformat())}: coverage {_ratio(d.coverage)} ({_e(d.status.value)})"
        "</title></circle>\n"
        for i, d in enumerate(days)
        if d.coverage is not None
    ]


def _svg_legend() -> list[str]:
    entries = (("coverage", "#1f4e99"), ("warning line", "#b60"), ("liquidation line", "#b00"))
    out = []
    for k, (label, colour) in enumerate(entries):
        x = _LEFT + 12 + 130 * k
        out.append(
            f'<line x1="{x}" y1="10" x2="{x + 18}" y2="10" stroke="{colour}" '
            f'stroke-width="2"/><text x="{x + 22}" y="14" font-size="11">'
            f"{label}</text>\n"
        )
    return out


__all__ = [
    "MAX_DAYS",
    "STATEMENT_FORMAT",
    "CheckpointRef",
    "ConsistencyProof",
    "DayCoverage",
    "DayStatus",
    "LogTrust",
    "Movement",
    "PeriodError",
    "Statement",
    "StatementError",
    "UnknownLoan",
    "Valuation",
    "build_statement",
    "collateral_value",
    "consistency_since",
    "coverage_svg",
    "daily_csv",
    "day_end_ms",
    "day_start_ms",
    "movements_csv",
    "render_html",
    "write_statement",
]
